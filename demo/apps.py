from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "demo"
    verbose_name = "Demo data and the embedded mode"

    def ready(self) -> None:
        from django.conf import settings

        if settings.EXCHANGE_CLOCK.startswith("step:") and settings.REDIS_URL:
            # A worker serving the simulator: it counts what it runs (demo/simulation).
            from demo.simulation.counters import counters_connect

            counters_connect(settings.REDIS_URL)
