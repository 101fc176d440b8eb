from django.core.management.base import BaseCommand

from demo.seed import seed_demo


class Command(BaseCommand):
    help = "Load the demo organisations, users and market (idempotent)"

    def handle(self, *args, **options):
        seed_demo()
        self.stdout.write("Demo data loaded.")
