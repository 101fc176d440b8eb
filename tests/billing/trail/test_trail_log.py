"""The subsidy trail: what is logged, when, and that tampering shows."""

import json

import pytest
import time_machine
from django.db import DatabaseError, connection, transaction

from accounts.models import Organisation
from billing import trail
from billing.models import Invoice, InvoiceLine, Redemption, TrailLeaf, TreeHead
from billing.trail import leaves
from billing.trail.tree import Tree, leaf_hash
from market.models import UsageRecord
from tests.billing.subsidy.factories import invoice_with_lines, spread_organisation, usage_line_spec
from tests.billing.trail.world import CLAIM_DAY, trail_world
from trail_verify.heads import HeadError, verify_signature
from trail_verify.heads import TreeHead as VerifiedHead
from trail_verify.merkle import root_of, verify_consistency, verify_inclusion

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    with time_machine.travel(CLAIM_DAY, tick=False):
        yield trail_world()


def _kinds() -> list[str]:
    return list(TrailLeaf.objects.order_by("index").values_list("kind", flat=True))


def test_a_claim_is_sealed_with_a_signed_head_over_all_its_evidence(world):
    head = world.claim.tree_head

    # the claim's head covers every leaf logged so far, in one gapless sequence
    assert head.tree_size == TrailLeaf.objects.count() == 18
    assert list(TrailLeaf.objects.values_list("index", flat=True)) == list(range(18))
    # 4 usage records, 4 issued lines, 4 redemptions, 5 status changes
    # (4 applied, 1 applied -> held), 1 succeeded card payment
    assert _kinds() == ["usage"] * 4 + ["invoice_line"] * 4 + ["redemption"] * 4 + [
        "redemption_status"
    ] * 5 + ["payment"]
    hashes = [bytes.fromhex(h) for h in TrailLeaf.objects.values_list("leaf_hash", flat=True)]
    assert root_of(hashes).hex() == head.root_hash


def test_a_leaf_is_the_canonical_json_of_its_record_and_names_its_evidence_by_hash(world):
    line = InvoiceLine.objects.filter(invoice=world.invoices[0]).order_by("pk").first()
    redemption = Redemption.objects.get(invoice_line=line)
    usage = redemption.usage_records.get()
    usage_leaf = TrailLeaf.objects.get(kind="usage", record_id=usage.pk)
    line_leaf = TrailLeaf.objects.get(kind="invoice_line", record_id=line.pk)
    body = json.loads(TrailLeaf.objects.get(kind="redemption", record_id=redemption.pk).leaf)

    assert usage_leaf.leaf == json.dumps(
        json.loads(usage_leaf.leaf), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert usage_leaf.leaf_hash == leaf_hash(usage_leaf.leaf.encode()).hex()
    assert json.loads(usage_leaf.leaf)["gpu_seconds_delivered"] == 720_000
    assert json.loads(usage_leaf.leaf)["window_start"] == "2026-05-03T02:00:00Z"
    assert body["amount"] == 216_000  # 30 % of ¥7,200.00
    assert body["invoice_line"] == {"id": line.pk, "hash": line_leaf.leaf_hash}
    assert body["usage_records"] == {str(usage.pk): usage_leaf.leaf_hash}
    assert json.loads(line_leaf.leaf)["usage_records"] == {str(usage.pk): usage_leaf.leaf_hash}


def test_appending_again_logs_nothing_twice(world):
    size = trail.trail_size()

    assert trail.trail_append_pending() == 0
    assert trail.tree_head_sign().tree_size == size


def test_draft_lines_wait_until_their_invoice_is_issued():
    provider = spread_organisation(Organisation.Kind.PROVIDER)
    buyer = spread_organisation(Organisation.Kind.BUYER)
    invoice = invoice_with_lines(buyer, [usage_line_spec(provider=provider, amount=3_600)])
    Invoice.objects.filter(pk=invoice.pk).update(status=Invoice.Status.DRAFT)
    line = invoice.lines.get()

    assert trail.trail_append_pending() == 1
    assert _kinds() == ["usage"]

    Invoice.objects.filter(pk=invoice.pk).update(status=Invoice.Status.OPEN)
    assert trail.trail_append_pending() == 1
    assert TrailLeaf.objects.get(index=1).record_id == line.pk
    assert _kinds() == ["usage", "invoice_line"]


def test_nothing_rewritten_nothing_reported(world):
    assert trail.trail_check() == []


def test_a_usage_record_rewritten_after_it_was_logged_is_found(world):
    usage = UsageRecord.objects.order_by("pk").first()
    UsageRecord.objects.filter(pk=usage.pk).update(gpu_seconds_delivered=900_000)

    found = trail.trail_check()

    # the record, and the line and the redemption that name it by its hash
    redemption = Redemption.objects.get(usage_records=usage)
    line = redemption.invoice_line
    assert [(m.kind, m.record_id, m.problem) for m in found] == [
        ("usage", usage.pk, "rewritten"),
        ("invoice_line", line.pk, "rewritten"),
        ("redemption", redemption.pk, "rewritten"),
    ]
    assert found[0].index == TrailLeaf.objects.get(kind="usage", record_id=usage.pk).index


def test_a_deleted_redemption_is_found(world):
    redemption = Redemption.objects.filter(status="applied").order_by("pk").last()
    with connection.cursor() as cursor:  # as someone with database access would
        for table in ("billing_subsidyclaim_redemptions", "billing_redemption_usage_records"):
            cursor.execute(f"DELETE FROM {table} WHERE redemption_id = %s", [redemption.pk])  # noqa: S608
        cursor.execute(
            "DELETE FROM billing_redemptionevent WHERE redemption_id = %s", [redemption.pk]
        )
        cursor.execute("DELETE FROM billing_redemption WHERE id = %s", [redemption.pk])

    found = trail.trail_check()

    assert {(m.kind, m.record_id, m.problem) for m in found} >= {
        ("redemption", redemption.pk, "deleted")
    }
    assert "redemption_status" in {m.kind for m in found}


@pytest.mark.postgres
def test_the_database_refuses_to_rewrite_or_delete_a_leaf_or_a_head(world):
    if connection.vendor != "postgresql":
        pytest.skip("the append-only triggers are PostgreSQL's")
    for statement in (
        """UPDATE billing_trailleaf SET leaf = '{}' WHERE "index" = 0""",
        """DELETE FROM billing_trailleaf WHERE "index" = 17""",
        "UPDATE billing_treehead SET tree_size = 3",
        "DELETE FROM billing_treehead",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement)
    assert TrailLeaf.objects.count() == 18


def test_tree_heads_are_signed_and_a_forged_one_is_refused(world):
    head = world.claim.tree_head
    public = trail.public_key_bytes()
    signed = VerifiedHead.from_json(trail.head_json(head))

    verify_signature(signed, public)

    for forged in (
        {**trail.head_json(head), "tree_size": head.tree_size + 1},
        {**trail.head_json(head), "root_hash": "00" * 32},
        {**trail.head_json(head), "timestamp_ms": trail.head_json(head)["timestamp_ms"] + 1},
        {**trail.head_json(head), "signature": "11" * 64},
    ):
        with pytest.raises(HeadError):
            verify_signature(VerifiedHead.from_json(forged), public)
    with pytest.raises(HeadError, match="names key"):
        verify_signature(signed, bytes(32))


def test_proofs_from_the_log_verify_with_the_standalone_verifier(world):
    with time_machine.travel(CLAIM_DAY, tick=False):
        first = world.claim.tree_head
        UsageRecord.objects.create(
            lease=UsageRecord.objects.first().lease,
            window_start=first.timestamp,
            window_end=first.timestamp,
            gpu_seconds_delivered=60,
        )
        second = trail.tree_head_sign()
    assert second.tree_size == first.tree_size + 1

    for leaf in TrailLeaf.objects.all():
        proof = trail.inclusion_proof(leaf=leaf, tree_size=second.tree_size)
        verify_inclusion(
            index=leaf.index,
            size=second.tree_size,
            leaf_hash_=leaf_hash(leaf.leaf.encode()),
            proof=[bytes.fromhex(p) for p in proof.path],
            root=bytes.fromhex(second.root_hash),
        )
    verify_consistency(
        size1=first.tree_size,
        size2=second.tree_size,
        root1=bytes.fromhex(first.root_hash),
        root2=bytes.fromhex(second.root_hash),
        proof=[bytes.fromhex(p) for p in trail.consistency_proof(first=18, second=19)],
    )
    assert TreeHead.objects.count() == 2


def test_the_trail_reads_records_by_their_fields_only(world):
    """A leaf recomputed from its row equals the logged one (no hidden state)."""
    for leaf in TrailLeaf.objects.filter(kind="usage"):
        usage = UsageRecord.objects.select_related("lease").get(pk=leaf.record_id)
        assert leaves.canonical(leaves.usage_leaf(usage)).decode() == leaf.leaf
    assert Tree([]).mth().hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_a_card_refund_is_logged_once_it_succeeded_and_a_rewrite_is_found(world):
    from billing.models import Refund

    refund = Refund.objects.create(
        payment=world.payment, amount=12_345, idempotency_key="refund-1", reason="duplicate"
    )
    trail.trail_append_pending()
    assert not TrailLeaf.objects.filter(kind="refund").exists()  # pending: not money yet

    Refund.objects.filter(pk=refund.pk).update(status="succeeded", stripe_refund_id="re_1")
    trail.trail_append_pending()
    trail.trail_append_pending()

    leaf = TrailLeaf.objects.get(kind="refund")
    assert json.loads(leaf.leaf) == {
        "v": leaves.VERSION,
        "kind": "refund",
        "id": refund.pk,
        "payment_id": world.payment.pk,
        "invoice": world.invoices[0].number,
        "invoice_id": world.invoices[0].pk,
        "buyer": world.invoices[0].buyer_id,
        "currency": "CNY",
        "amount": 12_345,
        "stripe_refund": "re_1",
    }
    assert trail.trail_check() == []
    # a refund made smaller after it was logged shows
    Refund.objects.filter(pk=refund.pk).update(amount=345)
    assert [(m.kind, m.record_id, m.problem) for m in trail.trail_check()] == [
        ("refund", refund.pk, "rewritten")
    ]
