from django.db import migrations


def seed(apps, schema_editor):
    import json

    from market.catalogue import DATA_FILE, FIELDS

    GPUModel = apps.get_model("market", "GPUModel")
    for entry in json.loads(DATA_FILE.read_text(encoding="utf-8")):
        GPUModel.objects.update_or_create(slug=entry["slug"], defaults={f: entry.get(f) for f in FIELDS})


class Migration(migrations.Migration):
    dependencies = [("market", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
