"""Run the whole exchange for a newcomer: migrate, load demo data, serve.

Stays in the foreground; Ctrl-C stops the web server and everything it
started (the in-process scheduler, the local fake Stripe, the simulated node
agents).
"""

import atexit
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from demo.scheduler import InProcessBeat

# A simulated day in 16 minutes: within five minutes a newcomer sees orders
# filling, prices moving, the day's invoices closing at midnight and a payout at 03:00.
DEMO_SPEED = 90.0
AGENT_INTERVAL_SECONDS = 5
BEIJING = dt.timezone(dt.timedelta(hours=8))


class Command(BaseCommand):
    help = "Migrate, load demo data and serve the exchange on 127.0.0.1"

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--no-agents",
            action="store_true",
            help="do not start simulated node agents (the demo orders then wait in the book)",
        )
        parser.add_argument(
            "--speed",
            type=float,
            default=DEMO_SPEED,
            help=f"run the exchange's clock this many times faster than real time, from "
            f"22:00 tonight, with a background market feeding it (default {DEMO_SPEED:g}; "
            "0: the real clock and no feed)",
        )
        parser.add_argument(
            "--agent-state-dir",
            default=str(settings.BASE_DIR / "var" / "demo-agents"),
            help="where the simulated agents keep their buffers and sequence numbers",
        )

    def handle(
        self,
        *args,
        host: str,
        port: int,
        no_agents: bool = False,
        agent_state_dir: str = "",
        speed: float = DEMO_SPEED,
        **options,
    ):
        # Scheduled tasks run every few seconds here; their success lines would
        # bury the address and log-ins printed below.
        logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
        # One access line per telemetry batch (12 a minute per node) would bury the rest.
        logging.getLogger("django.server").addFilter(_quiet_telemetry)
        self.stdout.write(
            "Preparing the database (migrations; the first run takes about a minute) …"
        )
        # Catalogues first: once a catalogue is loaded this process keeps it, so one
        # compiled after a translation was first asked for would stay English.
        call_command("compilemessages", verbosity=0, ignore_patterns=[".venv/*"])
        call_command("migrate", interactive=False, verbosity=0)
        spec = self._clock_start(speed) if speed > 0 else ""
        call_command("demo_data")
        # `kill` (SIGTERM) stops everything too, as Ctrl-C does: no orphans left.
        signal.signal(signal.SIGTERM, _interrupt)
        helpers = self._start_helpers(host=host, port=port)
        if not no_agents:
            helpers += self._start_agents(
                host=host, port=port, state_root=Path(agent_state_dir), clock_spec=spec
            )
        if speed > 0:
            from demo.simulation import MarketFeed

            feed = MarketFeed()
            feed.start()
            helpers.append(feed)
        address = f"http://{host}:{port}/"
        self._print_logins(address)
        if speed > 0:
            self.stdout.write(
                f"The exchange's clock runs {speed:g}× faster than real time (a simulated day "
                f"in {24 * 60 / speed:.0f} minutes): three simulated buyers keep ordering and "
                "paying, providers re-price by the hour, the day's invoices close at midnight "
                "and providers are paid at 03:00."
            )
        self.stdout.write("Press Enter to show the log-ins again, Ctrl-C to stop.\n")
        threading.Thread(
            target=self._logins_on_enter, args=(address,), name="log-ins", daemon=True
        ).start()
        try:
            call_command("runserver", f"{host}:{port}", use_reloader=False, skip_checks=True)
        finally:
            for helper in helpers:
                helper.stop()

    def _print_logins(self, address: str) -> None:
        from demo.seed import DEMO_USERS

        self.stdout.write(self.style.SUCCESS(f"\nThe compute exchange is running at {address}"))
        self.stdout.write("Demo log-ins (password: demo-password-2026):")
        for username, description in DEMO_USERS:
            self.stdout.write(f"  {username:<12} {description}")
        self.stdout.write(f"  admin        operator (Django admin at {address}admin/)")
        self.stdout.write("API docs: " + address + "api/docs/")

    def _logins_on_enter(self, address: str) -> None:
        if not sys.stdin or not sys.stdin.isatty():
            return
        for _line in sys.stdin:
            self._print_logins(address)

    def _clock_start(self, speed: float) -> str:
        """Put this process on the accelerated demo clock (22:00 tonight, Beijing
        time, or the next evening after where an earlier demo run left off) and
        scale the reporting settings to it; returns the clock's spec for the agents."""
        from core import clock

        state = settings.BASE_DIR / "var" / "demo-clock"
        state.parent.mkdir(parents=True, exist_ok=True)
        after = clock.now()
        if state.exists():
            after = max(after, dt.datetime.fromisoformat(state.read_text().strip()))
        local = after.astimezone(BEIJING).replace(hour=22, minute=0, second=0, microsecond=0)
        start = local if local > after else local + dt.timedelta(days=1)
        source = clock.AcceleratedClock(start=start, anchor=time.time(), speed=speed)
        clock.install(source)
        # agents post every 5 real seconds: that is the reporting interval in simulated time
        interval = AGENT_INTERVAL_SECONDS * speed
        for name, value in {
            "TELEMETRY_INTERVAL_SECONDS": interval,
            "HEALTH_CLEAN_PERIOD_SECONDS": int(2 * interval),
            "FAILOVER_AFTER_SECONDS": int(3 * interval),
            "METERING_WINDOW_SECONDS": max(300, int(interval // 60 + 1) * 60),
            "TELEMETRY_MAX_CLOCK_SKEW_SECONDS": int(max(300, 4 * interval)),
            "BILLING_PERIOD": "daily",
        }.items():
            setattr(settings, name, value)
        atexit.register(lambda: state.write_text(clock.now().isoformat()))
        self.stdout.write(
            f"Simulated clock: starts {start:%Y-%m-%d %H:%M} Beijing time, {speed:g}× real time"
        )
        return source.spec

    def _start_helpers(self, *, host: str = "127.0.0.1", port: int = 8000) -> list:
        helpers = []
        if not settings.STRIPE_API_BASE:
            # Billing: a loopback localstripe, its signed webhooks sent to this server.
            from billing.gateways.localstripe import LocalStripe

            stripe_server = LocalStripe().start()
            helpers.append(stripe_server)
            settings.STRIPE_API_BASE = stripe_server.api_base
            settings.STRIPE_CONNECT_ENABLED = False
            stripe_server.configure_webhook(
                url=f"http://{host}:{port}/api/v1/stripe/webhook/",
                secret=settings.STRIPE_WEBHOOK_SECRET,
            )
            self.stdout.write(f"Local fake Stripe (localstripe) at {stripe_server.api_base}")
        if not settings.REDIS_URL:
            beat = InProcessBeat()
            beat.start()
            helpers.append(beat)
        return helpers

    def _start_agents(self, *, host: str, port: int, state_root: Path, clock_spec: str) -> list:
        """One simulated node agent per demo node, posting real telemetry to
        this server: a node is matched once its agent has reported, and lease
        pages fill in as time passes."""
        from demo.market import demo_nodes
        from demo.simulation import simulated_agent_argv
        from market.capacity import node_token_rotate

        agents = []
        for node in demo_nodes():
            token = node_token_rotate(node=node)
            state_dir = state_root / str(node.pk)
            state_dir.mkdir(parents=True, exist_ok=True)
            process = subprocess.Popen(
                simulated_agent_argv(
                    url=f"http://{host}:{port}", gpus=node.gpu_count, state_dir=state_dir
                )
                + ["--interval", str(AGENT_INTERVAL_SECONDS)],
                # the token in the environment, not on a command line `ps` shows
                env={**os.environ, "EXCHANGE_NODE_TOKEN": token, "EXCHANGE_CLOCK": clock_spec},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            agents.append(_AgentProcess(process))
        if agents:
            self.stdout.write(f"Simulated node agents: {len(agents)} (one per demo node)")
        return agents


def _quiet_telemetry(record: logging.LogRecord) -> bool:
    """Drop the access lines of accepted telemetry batches (errors still show)."""
    message = record.getMessage()
    return not ("/api/v1/telemetry/" in message and getattr(record, "status_code", 500) < 400)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


class _AgentProcess:
    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
