"""Invoice lines sum usage records: the one-to-one link from a line to its
record becomes a link table (each record on at most one line). Existing
lines keep their record as their one piece of evidence."""

import django.db.models.deletion
from django.db import migrations, models


def _links_from_lines(apps, schema_editor):
    line_model = apps.get_model("billing", "InvoiceLine")
    link_model = apps.get_model("billing", "InvoiceLineUsage")
    links = [
        link_model(line_id=pk, usage_record_id=usage_id)
        for pk, usage_id in line_model.objects.filter(usage_record__isnull=False).values_list(
            "pk", "usage_record_id"
        )
    ]
    link_model.objects.bulk_create(links, batch_size=5000)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0008_trail"),
        ("market", "0011_merge_20261129_1330"),
    ]

    operations = [
        migrations.CreateModel(
            name="InvoiceLineUsage",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "line",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="usage_links",
                        to="billing.invoiceline",
                    ),
                ),
                (
                    "usage_record",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="invoice_link",
                        to="market.usagerecord",
                    ),
                ),
            ],
            options={"ordering": ["pk"]},
        ),
        migrations.RunPython(_links_from_lines, migrations.RunPython.noop),
        migrations.RemoveField(model_name="invoiceline", name="usage_record"),
        migrations.AddField(
            model_name="invoiceline",
            name="usage_records",
            field=models.ManyToManyField(
                blank=True,
                related_name="invoice_lines",
                through="billing.InvoiceLineUsage",
                to="market.usagerecord",
            ),
        ),
    ]
