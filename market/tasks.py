# Celery autodiscovery imports `market.tasks`; each part keeps its tasks in its own module.
from market.tasks_market import leases_advance, match_order, match_round, orders_expire  # noqa: F401
