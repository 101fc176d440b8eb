"""Settlement hooks used by tests (settings.BILLING_SETTLEMENT_HOOKS)."""

import os
import time
from pathlib import Path


def cover_one_thousand_yuan(*, invoice) -> int:
    return min(100_000, invoice.total_amount)


def pause_mid_settlement(*, invoice) -> int:
    """Marks that settlement is in progress, then sleeps inside the issue
    transaction so a test can SIGKILL the worker right there."""
    marker_dir = os.environ.get("BILLING_TEST_MARKER_DIR")
    if marker_dir:
        Path(marker_dir, f"settling-{invoice.pk}-{os.getpid()}").touch()
        time.sleep(float(os.environ.get("BILLING_TEST_PAUSE_SECONDS", "0.5")))
    return 0
