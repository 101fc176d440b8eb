"""`exchange-verify`: the authority's own check of the exchange's subsidy trail.

    exchange-verify --server URL head
    exchange-verify --server URL --token T inclusion --kind usage --id 42
    exchange-verify --server URL --token T audit-claim --claim 7 [--full]
    exchange-verify --server URL --token T audit-claim --report claim-7.json

Every command first accepts the exchange's latest signed tree head (signed by
the pinned key, consistent with every head in the state file) and remembers it.
Exit status: 0 verified, 1 something does not hold, 2 could not ask or bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trail_verify import __version__
from trail_verify.audit import ClaimAudit, audit_claim
from trail_verify.client import ExchangeError, TrailClient
from trail_verify.state import State
from trail_verify.verifier import VerificationFailed, Verifier

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_ERROR = 2
KINDS = ("usage", "invoice_line", "payment", "redemption", "redemption_status", "refund")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exchange-verify",
        description="Verify the compute exchange's subsidy trail without trusting the exchange.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--server",
        default=os.environ.get("EXCHANGE_URL", "http://127.0.0.1:8000"),
        help="the exchange's address (env EXCHANGE_URL)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("EXCHANGE_TOKEN"),
        help="an authority's API token, for leaves, proofs and claims (env EXCHANGE_TOKEN)",
    )
    parser.add_argument(
        "--state",
        type=Path,
        default=Path(os.environ.get("EXCHANGE_VERIFY_STATE", "~/.exchange-verify/state.json")),
        help="where the pinned key and the tree heads seen are kept",
    )
    parser.add_argument(
        "--public-key", help="the exchange's Ed25519 public key (hex), to pin instead of trusting"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("head", help="fetch, verify and remember the latest signed tree head")
    inclusion = commands.add_parser("inclusion", help="prove one record is in the log")
    inclusion.add_argument("--kind", choices=KINDS)
    inclusion.add_argument("--id", type=int, help="the record's id")
    inclusion.add_argument("--index", type=int, help="or the leaf's index")
    audit = commands.add_parser("audit-claim", help="audit a subsidy claim against the log")
    source = audit.add_mutually_exclusive_group(required=True)
    source.add_argument("--claim", type=int, help="fetch the claim's audit report")
    source.add_argument("--report", type=Path, help="a claim audit report saved as JSON")
    audit.add_argument(
        "--full",
        action="store_true",
        help="also download the whole log, recompute it, and check the claim misses nothing",
    )
    return parser


def _emit(args: argparse.Namespace, text: list[str], data: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(data, indent=1, ensure_ascii=False, sort_keys=True))
    else:
        print("\n".join(text))


def _head(args, verifier: Verifier) -> int:
    head, proved = verifier.accept_head(verifier.client.tree_head())
    lines = [*verifier.notes, f"tree head OK: {head.short()}, signed by key {head.key_id}"]
    lines += [f"  consistent: {p}" for p in proved] or ["  (no earlier head to compare with)"]
    _emit(args, lines, {"ok": True, "tree_head": head.to_json(), "consistency": proved})
    return EXIT_OK


def _inclusion(args, verifier: Verifier) -> int:
    if args.index is None and not (args.kind and args.id):
        raise SystemExit("inclusion: give --index, or --kind and --id")
    head, _proved = verifier.accept_head(verifier.client.tree_head())
    leaf = verifier.leaf(head, kind=args.kind, record_id=args.id, index=args.index)
    lines = [
        *verifier.notes,
        f"{leaf.kind} {leaf.record_id} is leaf {leaf.index} of the signed tree ({head.short()})",
        json.dumps(leaf.body, indent=1, ensure_ascii=False, sort_keys=True),
    ]
    data = {"ok": True, "tree_head": head.to_json(), "index": leaf.index, "leaf": leaf.body}
    _emit(args, lines, data)
    return EXIT_OK


def _audit_text(audit: ClaimAudit, notes: list[str]) -> list[str]:
    verdict = "VERIFIED" if audit.ok else "FAILED"
    lines = [
        *notes,
        f"claim {audit.claim} (programme {audit.programme}, {audit.period}): {verdict}",
    ]
    lines += [f"  ok   {check}" for check in audit.checks]
    lines.append(
        f"  ok   {audit.leaves_proved} leaves proved in the signed tree; "
        f"{audit.subsidy_proved_amount} of {audit.claimed_amount} fen claimed traced to "
        "redemption, invoice line and usage leaves"
    )
    lines += [f"  FAIL {problem}" for problem in audit.problems]
    return lines


def _audit_claim(args, verifier: Verifier) -> int:
    latest, _ = verifier.accept_head(verifier.client.tree_head())
    if args.report:
        report = json.loads(args.report.read_text())
    else:
        report = verifier.client.claim_report(args.claim)
    audit = audit_claim(verifier, report, full=args.full)
    notes = [*verifier.notes, f"latest tree head OK: {latest.short()}"]
    _emit(args, _audit_text(audit, notes), audit.to_json())
    return EXIT_OK if audit.ok else EXIT_FAILED


COMMANDS = {"head": _head, "inclusion": _inclusion, "audit-claim": _audit_claim}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    state = State(args.state.expanduser())
    client = TrailClient(args.server, token=args.token)
    try:
        verifier = Verifier(client, state, public_key=args.public_key)
        status = COMMANDS[args.command](args, verifier)
    except VerificationFailed as exc:
        _emit(args, [f"FAILED: {exc}"], {"ok": False, "problem": str(exc)})
        return EXIT_FAILED
    except ExchangeError as exc:
        print(f"exchange-verify: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        client.close()
    state.save()
    return status
