"""FundingTerms.held: whether a buyer is stopped at zero. Terms that existed
before were all holding their buyer (anyone with terms was held), so they
keep it; terms made from now on (a top-up alone) hold nobody until the buyer
chooses so or staff grant credit."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0015_prepaid_balance_and_credit"),
    ]

    operations = [
        migrations.AddField(
            model_name="fundingterms",
            name="held",
            field=models.BooleanField(default=True),
        ),
        migrations.AlterField(
            model_name="fundingterms",
            name="held",
            field=models.BooleanField(default=False),
        ),
    ]
