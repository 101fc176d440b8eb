"""Demo trading for the embedded mode: the demo buyer's first orders, placed
through the real order service so that matching, leases, metering and
invoicing happen as they would for any buyer. Idempotent (idempotency keys).
The demo nodes await their agents when the orders are placed: the orders wait
in the book and fill once the demo's simulated agents have reported."""

import datetime as dt
from decimal import Decimal

from accounts.models import Membership, Organisation
from core import clock
from market.models import GPUModel, Order
from market.orders import order_create

DEMO_BUYER_CODE = "91330100716105852F"


def seed() -> None:
    buyer = Organisation.objects.filter(credit_code=DEMO_BUYER_CODE).first()
    if buyer is None:
        return
    owner = Membership.objects.filter(organisation=buyer).select_related("user").first()
    start_by = clock.now() + dt.timedelta(hours=6)
    models = {model.slug: model for model in GPUModel.objects.all()}
    orders = [
        # fine-tuning on NVIDIA: either H800 or A800, whichever is cheaper
        dict(
            gpu_count=8,
            hours=72,
            max_price_amount=2_500,
            accepted_models=[models["nvidia-h800-sxm"], models["nvidia-a800-sxm-80gb"]],
            idempotency_key="demo-finetune",
        ),
        # training on domestic accelerators, all GPUs at one site
        dict(
            gpu_count=16,
            hours=48,
            max_price_amount=1_500,
            domestic_only=True,
            gang=True,
            min_green_share=Decimal("0.5"),
            idempotency_key="demo-domestic-training",
        ),
        # inference: any GPU with at least 300 dense TFLOPS
        dict(
            gpu_count=4,
            hours=24,
            max_price_amount=800,
            min_tflops=Decimal(300),
            idempotency_key="demo-inference",
        ),
    ]
    for spec in orders:
        if Order.objects.filter(buyer=buyer, idempotency_key=spec["idempotency_key"]).exists():
            continue  # placed by an earlier demo run (its start-by differs, so skip, not replay)
        order_create(
            buyer=buyer, placed_by=owner.user if owner else None, start_by=start_by, **spec
        )
