# Celery autodiscovery imports `market.tasks`; each part keeps its tasks in its own module.
from market.tasks_market import leases_advance, match_order, match_round, orders_expire  # noqa: F401
from market.tasks_telemetry import leases_failover, leases_meter, nodes_health_check  # noqa: F401
