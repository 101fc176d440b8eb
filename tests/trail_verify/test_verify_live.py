"""`exchange-verify`, the real program in its own process, against the exchange
served on a loopback port: it pins the key, keeps the heads it saw, proves a
claim fen by fen, and refuses what was rewritten.

Run with `-s` to see the verifier's own words (the closing note quotes them)."""

import datetime as dt
import json
import subprocess
import sys

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from knox.models import AuthToken

from billing import trail
from billing.models import Redemption, TrailLeaf
from market.models import UsageRecord
from tests.billing.trail.world import CLAIM_DAY, trail_world

pytestmark = [pytest.mark.slow, pytest.mark.integration]


class Verify:
    def __init__(self, server: str, token: str, state) -> None:
        self.server, self.token, self.state = server, token, state

    def __call__(self, *args: str, state=None) -> subprocess.CompletedProcess:
        command = [
            sys.executable,
            "-m",
            "trail_verify",
            "--server",
            self.server,
            "--token",
            self.token,
            "--state",
            str(state or self.state),
            *args,
        ]
        result = subprocess.run(
            command, capture_output=True, text=True, cwd=settings.BASE_DIR, timeout=120
        )
        shown = " ".join(["exchange-verify", *args])
        print(f"\n$ {shown}\n{result.stdout}{result.stderr}(exit {result.returncode})")
        return result


def _sql(statement: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def _unguarded(statement: str, params=()) -> None:
    """Write the trail's table as someone with the database's keys would."""
    if connection.vendor == "postgresql":
        _sql("ALTER TABLE billing_trailleaf DISABLE TRIGGER billing_trailleaf_append_only")
    try:
        _sql(statement, params)
    finally:
        if connection.vendor == "postgresql":
            _sql("ALTER TABLE billing_trailleaf ENABLE TRIGGER billing_trailleaf_append_only")


@pytest.fixture
def world(transactional_db, live_server, tmp_path):
    with time_machine.travel(CLAIM_DAY, tick=False):
        world = trail_world()
    _instance, token = AuthToken.objects.create(user=world.authority_user)
    world.verify = Verify(live_server.url, token, tmp_path / "state.json")
    return world


def test_an_authority_audits_a_claim_end_to_end_and_sees_tampering(world, tmp_path):
    verify, claim = world.verify, world.claim

    # the first contact pins the exchange's key and remembers its head
    result = verify("head")
    assert result.returncode == 0, result.stderr
    assert "pinned the exchange's published key" in result.stdout
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["public_key"] == trail.public_key_bytes().hex()
    assert [h["tree_size"] for h in state["heads"]] == [18]

    # one usage record, proved to be in the signed tree
    usage = UsageRecord.objects.order_by("pk").first()
    result = verify("inclusion", "--kind", "usage", "--id", str(usage.pk))
    assert result.returncode == 0, result.stderr
    assert f"usage {usage.pk} is leaf 0 of the signed tree (size 18" in result.stdout
    assert '"gpu_seconds_delivered": 720000' in result.stdout

    # the claim, fen by fen, and the whole log recomputed
    result = verify("audit-claim", "--claim", str(claim.pk), "--full")
    assert result.returncode == 0, result.stdout
    assert f"claim {claim.pk} (programme {world.programme.pk}, 2026-05): VERIFIED" in result.stdout
    assert "the 3 rows add up to the claim: ¥3,394.37" in result.stdout
    assert "9 leaves proved in the signed tree; 339437 of 339437 fen claimed" in result.stdout
    assert "the claim lists exactly the 3 standing redemptions logged" in result.stdout
    as_json = json.loads(verify("--json", "audit-claim", "--claim", str(claim.pk)).stdout)
    assert as_json["ok"] is True
    assert as_json["subsidy_proved_amount"] == claim.total_amount == 339_437

    # an hour later the log has grown: the new head is proved to extend the one seen,
    # and the claim's head is proved to be a prefix of it
    later = UsageRecord.objects.create(
        lease_id=usage.lease_id,
        window_start=usage.window_end,
        window_end=usage.window_end + dt.timedelta(minutes=5),
        gpu_seconds_delivered=60,
    )
    assert trail.tree_head_sign().tree_size == 19
    result = verify("head")
    assert result.returncode == 0, result.stdout
    assert "consistent: size 18 is a prefix of size 19" in result.stdout
    result = verify("audit-claim", "--claim", str(claim.pk))
    assert result.returncode == 0, result.stdout
    assert "latest tree head OK: size 19" in result.stdout

    # a usage record rewritten after it was logged: the claim no longer matches the log
    UsageRecord.objects.filter(pk=usage.pk).update(gpu_seconds_delivered=900_000)
    result = verify("audit-claim", "--claim", str(claim.pk))
    assert result.returncode == 1
    assert (
        f"FAIL usage record {usage.pk}: GPU-seconds delivered: the claim says 900000, "
        "the log says 720000"
    ) in result.stdout
    UsageRecord.objects.filter(pk=usage.pk).update(gpu_seconds_delivered=720_000)

    # a redemption deleted from the database: the claim is short, the log still has it
    gone = Redemption.objects.get(usage_records__window_start__day=20)
    for table in ("billing_subsidyclaim_redemptions", "billing_redemption_usage_records"):
        _sql(f"DELETE FROM {table} WHERE redemption_id = %s", [gone.pk])  # noqa: S608
    _sql("DELETE FROM billing_redemptionevent WHERE redemption_id = %s", [gone.pk])
    _sql("DELETE FROM billing_redemption WHERE id = %s", [gone.pk])
    result = verify("audit-claim", "--claim", str(claim.pk), "--full")
    assert result.returncode == 1
    assert "FAIL the claim's total is ¥3,394.37, its rows add up to ¥3,024.00" in result.stdout
    assert (
        f"FAIL redemption {gone.pk} (¥370.37) is logged for this programme and month "
        "but missing from the claim"
    ) in result.stdout

    # history rewritten: a logged leaf changed and a new head signed over it
    _unguarded('UPDATE billing_trailleaf SET leaf_hash = %s WHERE "index" = 0', ["00" * 32])
    UsageRecord.objects.create(
        lease_id=usage.lease_id,
        window_start=later.window_end,
        window_end=later.window_end + dt.timedelta(minutes=5),
        gpu_seconds_delivered=60,
    )
    assert trail.tree_head_sign().tree_size == 20
    before = (tmp_path / "state.json").read_text()
    result = verify("head")
    assert result.returncode == 1
    assert "FAILED: history was rewritten: the log at size 20" in result.stdout
    assert (tmp_path / "state.json").read_text() == before  # the forged head is not kept

    # a head signed by another key than the one the authority was given
    result = verify("--public-key", "ab" * 32, "head", state=tmp_path / "other.json")
    assert result.returncode == 1
    assert "FAILED: the head names key" in result.stdout
    assert TrailLeaf.objects.count() == 20
