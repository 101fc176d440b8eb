# Offers leave room for their own updates (PostgreSQL only). A match moves an
# offer's `gpus_available`, which no index holds, so PostgreSQL can write the
# new row version on the same page without touching the offer's nine indexes
# (a heap-only update) - when the page has room for it. A matching round may
# update every offer of a page at once: at fillfactor 50 a freshly written page
# has room for a new version of each of its rows. The cost is the table's size
# on disk (about twice; offers are few and small: 5,000 take 1.5 MB instead of
# 0.7 MB), and nothing else. Existing pages keep their fill until rewritten
# (VACUUM FULL or pg_repack), or as updates and vacuum move their rows.

from django.db import migrations

OFFERS = "market_offer"


def offers_leave_room(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {OFFERS} SET (fillfactor = 50)")


def offers_fill(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {OFFERS} RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("market", "0021_telemetry_ticks")]

    operations = [migrations.RunPython(offers_leave_room, offers_fill)]
