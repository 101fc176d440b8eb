"""Run the whole exchange for a newcomer: migrate, load demo data, serve.

Stays in the foreground; Ctrl-C stops the web server and everything it
started (the in-process scheduler, the local fake Stripe, the simulated node
agents).
"""

import logging
import signal
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from demo.scheduler import InProcessBeat


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
        **options,
    ):
        # Scheduled tasks run every few seconds here; their success lines would
        # bury the address and log-ins printed below.
        logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
        call_command("migrate", interactive=False, verbosity=0)
        call_command("compilemessages", verbosity=0, ignore_patterns=[".venv/*"])
        call_command("demo_data")
        # `kill` (SIGTERM) stops everything too, as Ctrl-C does: no orphans left.
        signal.signal(signal.SIGTERM, _interrupt)
        helpers = self._start_helpers(host=host, port=port)
        if not no_agents:
            helpers += self._start_agents(host=host, port=port, state_root=Path(agent_state_dir))
        address = f"http://{host}:{port}/"
        self.stdout.write(self.style.SUCCESS(f"\nThe compute exchange is running at {address}"))
        self.stdout.write("Demo log-ins (password: demo-password-2026):")
        from demo.seed import DEMO_USERS

        for username, description in DEMO_USERS:
            self.stdout.write(f"  {username:<12} {description}")
        self.stdout.write(f"  admin        operator (Django admin at {address}admin/)")
        self.stdout.write("API docs: " + address + "api/docs/    Press Ctrl-C to stop.\n")
        try:
            call_command("runserver", f"{host}:{port}", use_reloader=False, skip_checks=True)
        finally:
            for helper in helpers:
                helper.stop()

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

    def _start_agents(self, *, host: str, port: int, state_root: Path) -> list:
        """One simulated node agent per demo node, posting real telemetry to
        this server: a node is matched once its agent has reported, and lease
        pages fill in as time passes."""
        from demo.market import demo_nodes
        from market.capacity import node_token_rotate

        agents = []
        for node in demo_nodes():
            token = node_token_rotate(node=node)
            state_dir = state_root / str(node.pk)
            state_dir.mkdir(parents=True, exist_ok=True)
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "agent",
                    "--url",
                    f"http://{host}:{port}",
                    "--token",
                    token,
                    "--simulate",
                    "--gpus",
                    str(node.gpu_count),
                    "--interval",
                    "5",
                    "--state-dir",
                    str(state_dir),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            agents.append(_AgentProcess(process))
        if agents:
            self.stdout.write(f"Simulated node agents: {len(agents)} (one per demo node)")
        return agents


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
