"""`exchange-agent`: command line, configuration and process lifecycle."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

import httpx

from agent import __version__
from agent.buffer import SampleBuffer, StateDirBusy
from agent.client import MAX_SAMPLES_PER_POST, TelemetryClient
from agent.nvml import NvmlReader, NvmlUnavailable
from agent.readings import GpuReader
from agent.runner import Agent, AuthFailed, StopFlag
from agent.selftest import nvml_self_test, self_test_post, simulated_self_test
from agent.simulator import Simulator, parse_fault

log = logging.getLogger("agent")

# Exit statuses, so a supervisor can tell "fix the config" from "crashed".
EXIT_OK = 0
EXIT_REJECTED = 1  # --once only: the exchange rejected a batch (400)
EXIT_CONFIG = 2  # bad flags, no NVML, state dir busy
EXIT_AUTH = 3  # the exchange refused the node token
EXIT_NOT_VERIFIED = 4  # --self-test: the exchange did not verify the node

DEFAULT_STATE_DIR = "~/.exchange-agent"


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exchange-agent",
        description="Report GPU telemetry from this node to the compute exchange.",
        epilog="Exit status: 0 ok (also after SIGTERM/SIGINT), 1 a batch was rejected "
        "(--once, --self-test), 2 configuration error, 3 the exchange refused the token, "
        "4 the self-test did not verify the node.",
    )
    add = parser.add_argument
    add(
        "--url",
        default=os.environ.get("EXCHANGE_URL"),
        help="base URL of the exchange, e.g. https://exchange.example (env EXCHANGE_URL)",
    )
    add(
        "--token",
        default=os.environ.get("EXCHANGE_NODE_TOKEN"),
        help="the node's agent token; prefer the env var EXCHANGE_NODE_TOKEN, since "
        "command lines are visible to other users",
    )
    add(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("EXCHANGE_AGENT_STATE_DIR", DEFAULT_STATE_DIR)),
        help=f"buffer and sequence counter (env EXCHANGE_AGENT_STATE_DIR, "
        f"default {DEFAULT_STATE_DIR})",
    )
    add("--interval", type=_positive, default=5.0, help="seconds between posts (default 5)")
    add(
        "--sample-every",
        type=_positive,
        default=None,
        help="seconds between samples of each GPU (default: --interval)",
    )
    add("--once", action="store_true", help="take one round of samples, post them, exit")
    add(
        "--self-test",
        action="store_true",
        help="measure memory, bandwidth and TFLOPS (a short compute burst), report them for "
        "the node's verification, print the verdict and exit (0 verified, 4 not)",
    )
    add("--duration", type=_positive, default=None, help="run for this many seconds, then exit")
    add(
        "--max-buffer-samples",
        type=_positive_int,
        default=1_000_000,
        help="drop the oldest buffered samples beyond this many (default 1000000)",
    )
    add(
        "--max-batch",
        type=_positive_int,
        default=MAX_SAMPLES_PER_POST,
        help=f"samples per request (at most {MAX_SAMPLES_PER_POST})",
    )
    add(
        "--max-backoff",
        type=_positive,
        default=60.0,
        help="longest wait between retries while the exchange is unavailable (default 60)",
    )
    add("--timeout", type=_positive, default=10.0, help="HTTP timeout in seconds (default 10)")
    sim = parser.add_argument_group("simulator (no GPU needed)")
    sim.add_argument("--simulate", action="store_true", help="read a simulated node, not NVML")
    sim.add_argument("--gpus", type=_positive_int, default=8, help="simulated GPUs (default 8)")
    sim.add_argument("--seed", type=int, default=None, help="make the simulation repeatable")
    sim.add_argument(
        "--sim-speed",
        type=_positive,
        default=1.0,
        help="self-test: scale the simulated card's TFLOPS and bandwidth (default 1)",
    )
    sim.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND@T[:DUR][,gpu=N]",
        help="inject a fault T seconds after start; KIND is gpu-lost, xid-burst, "
        "ecc-burst, overheat or silence (repeatable), e.g. "
        "gpu-lost@30,gpu=2 or silence@40:15",
    )
    add("-v", "--verbose", action="store_true", help="log debug details")
    add("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.url:
        parser.error("--url or EXCHANGE_URL is required")
    if not args.url.startswith(("http://", "https://")):
        parser.error(f"--url must start with http:// or https://, got {args.url!r}")
    if not args.token:
        parser.error("--token or EXCHANGE_NODE_TOKEN is required")
    if args.once and args.duration is not None:
        parser.error("--once and --duration are exclusive")
    if args.fault and not args.simulate:
        parser.error("--fault needs --simulate")
    try:
        args.fault = [parse_fault(spec) for spec in args.fault]
    except ValueError as exc:
        parser.error(str(exc))


def simulated_wall_clock(spec: str) -> Callable[[], float] | None:
    """The exchange's accelerated demo clock (EXCHANGE_CLOCK=sim:<start ISO>@<anchor
    epoch>x<speed>, core/clock.py): a simulated node stamps its samples on the
    exchange's simulated time. None for anything else (the real clock)."""
    if not spec.startswith("sim:") or "@" not in spec or "x" not in spec.rsplit("@", 1)[1]:
        return None
    start_text, rest = spec.removeprefix("sim:").rsplit("@", 1)
    anchor, speed = (float(part) for part in rest.split("x", 1))
    start = dt.datetime.fromisoformat(start_text).timestamp()
    return lambda: start + (time.time() - anchor) * speed


def _make_reader(args: argparse.Namespace) -> GpuReader:
    if args.simulate:
        return Simulator(gpus=args.gpus, faults=args.fault, seed=args.seed)
    return NvmlReader()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s exchange-agent: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # it logs every request at INFO
    if args.self_test:
        return _self_test(args)
    try:
        reader = _make_reader(args)
    except (NvmlUnavailable, ValueError) as exc:
        log.error("%s (on a machine without GPUs, try --simulate)", exc)
        return EXIT_CONFIG
    try:
        buffer = SampleBuffer(args.state_dir.expanduser(), max_samples=args.max_buffer_samples)
    except StateDirBusy as exc:
        reader.close()
        log.error("%s", exc)
        return EXIT_CONFIG
    client = TelemetryClient(url=args.url, token=args.token, timeout=args.timeout)
    stop = StopFlag()
    _install_signal_handlers(stop)
    clock = simulated_wall_clock(os.environ.get("EXCHANGE_CLOCK", ""))
    agent = Agent(
        reader=reader,
        buffer=buffer,
        client=client,
        stop=stop,
        interval=args.interval,
        sample_every=args.sample_every,
        max_backoff=args.max_backoff,
        max_batch=args.max_batch,
        send_in_background=not args.once,
        **({"wall_clock": clock} if args.simulate and clock else {}),
    )
    log.info(
        "reporting to %s every %.1f s; state in %s, next seq %d, %d samples buffered",
        client.endpoint,
        args.interval,
        args.state_dir,
        buffer.next_seq,
        len(buffer),
    )
    try:
        return agent.run_once() if args.once else agent.run(args.duration)
    except AuthFailed as exc:
        log.critical(
            "%s; samples stay buffered in %s. Check EXCHANGE_NODE_TOKEN.", exc, args.state_dir
        )
        return EXIT_AUTH
    finally:
        log.info("stopping; %d samples buffered, next seq %d", len(buffer), buffer.next_seq)
        client.close()
        buffer.close()
        reader.close()
        stop.close()


def _self_test(args: argparse.Namespace) -> int:
    try:
        if args.simulate:
            report = simulated_self_test(gpus=args.gpus, speed=args.sim_speed)
        else:
            report = nvml_self_test()
    except NvmlUnavailable as exc:
        log.error("%s (on a machine without GPUs, try --simulate)", exc)
        return EXIT_CONFIG
    try:
        status, answer = self_test_post(
            url=args.url, token=args.token, report=report, timeout=args.timeout
        )
    except httpx.HTTPError as exc:
        log.error("cannot reach %s: %s", args.url, exc)
        return EXIT_CONFIG
    print(json.dumps({"report": report.as_json(), "status": status, "answer": answer}))
    if status in (401, 403):
        return EXIT_AUTH
    if status >= 400:
        return EXIT_REJECTED
    return EXIT_OK if answer.get("verified") else EXIT_NOT_VERIFIED


def _install_signal_handlers(stop: StopFlag) -> None:
    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
