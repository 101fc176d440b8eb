"""Run a simulated market through the real exchange and report on it.

    python manage.py simulate --hours 24 --nodes 200 --orders 1000 --seed 7

Runs on a fresh database of its own (`--database`: a SQLite file by default,
tasks in-process; a PostgreSQL URL with REDIS_URL set starts a real Celery
worker on the simulated clock). Prints the report, saves it as HTML (and JSON
with `--json`), and exits 1 when an invariant fails.
"""

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

CHILD_FLAG = "EXCHANGE_SIMULATION_CHILD"


class Command(BaseCommand):
    help = "Simulate a market day (or more) through the real exchange and report on it"

    def add_arguments(self, parser):
        add = parser.add_argument
        add("--hours", type=float, default=24.0, help="simulated hours (default 24)")
        add(
            "--speed",
            type=float,
            default=0.0,
            help="at most this many simulated seconds per real second (default: flat out)",
        )
        add("--seed", type=int, default=1, help="same seed, same report")
        add("--providers", type=int, default=20)
        add("--nodes", type=int, default=200, help="8-GPU nodes in all")
        add("--buyers", type=int, default=60)
        add("--orders", type=int, default=1000, help="orders placed over the run (about)")
        add("--fault-rate", type=float, default=1.0, help="faults per node per simulated day")
        add("--never-reporting", type=int, default=1, help="nodes whose agent never reports")
        add(
            "--real-agents",
            type=int,
            default=2,
            help="nodes reported by the real agent (python -m agent --simulate) over HTTP, "
            "one process per step each; the rest by the fast in-process model (default 2)",
        )
        add(
            "--step",
            type=int,
            default=300,
            help="simulated seconds between agent reports, whole minutes (default 300)",
        )
        add("--start", default="2026-03-02T00:00:00+08:00", help="simulated start (ISO 8601)")
        add(
            "--database",
            default="sqlite:///var/simulate.sqlite3",
            help="a database URL, emptied and migrated first (PostgreSQL: a real worker "
            "when REDIS_URL is set)",
        )
        add("--html", default="var/simulate-report.html", help="where to save the HTML report")
        add("--json", default="", help="also save the comparable report as JSON here")
        add("--quiet", action="store_true", help="no progress bar")  # fmt: skip

    def handle(self, *args, **options):
        if os.environ.get(CHILD_FLAG) != "1":
            return self._fresh_database_then_run(options)
        return self._run(options)

    def _fresh_database_then_run(self, options) -> None:
        """Empty the database named, then run this command again on it (the
        settings read DATABASE_URL once, at start-up)."""
        url = options["database"]
        self.stdout.write(f"Preparing a fresh database: {url.split('@')[-1]}")
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            path = path if path.is_absolute() else settings.BASE_DIR / path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
        elif url.startswith(("postgres://", "postgresql://")):
            _postgres_recreate(url)
        else:
            raise CommandError("--database: a sqlite:/// or postgres:// URL")
        env = {**os.environ, CHILD_FLAG: "1", "DATABASE_URL": url}
        if url.startswith("sqlite"):
            env.pop("REDIS_URL", None)  # the embedded mode: tasks in-process
            env.pop("CACHE_REDIS_URL", None)
        argv = [sys.executable, str(settings.BASE_DIR / "manage.py"), "simulate", *sys.argv[2:]]
        code = subprocess.call(argv, env=env)
        if code:
            sys.exit(code)

    def _run(self, options) -> None:
        from rich.console import Console

        from billing.gateways.localstripe import LocalStripe
        from demo.simulation import (
            EagerTasks,
            Options,
            WorkerTasks,
            report_build,
            report_html,
            report_print,
            settings_apply,
            simulate,
        )

        console = Console()
        wall_start = time.monotonic()
        console.print("Migrating the fresh database …")
        call_command("migrate", interactive=False, verbosity=0)
        stripe = LocalStripe().start()
        extra = {"STRIPE_API_BASE": stripe.api_base, "STRIPE_CONNECT_ENABLED": False}
        if options["step"] < 60 or options["step"] % 60:
            raise CommandError("--step: whole minutes, at least 60")
        env = {**os.environ, **settings_apply(extra, step=options["step"])}
        log_dir = settings.BASE_DIR / "var"
        log_dir.mkdir(exist_ok=True)
        if settings.REDIS_URL:
            env["EXCHANGE_CLOCK"] = f"step:{settings.REDIS_URL}"
            console.print(
                "Tasks: a real Celery worker on the simulated clock (var/simulate-worker.log)"
            )

            def factory(observations):
                return WorkerTasks(env=env, log=log_dir / "simulate-worker.log")
        else:
            console.print("Tasks: in this process (embedded mode)")
            factory = EagerTasks
        sim = Options(
            hours=options["hours"],
            seed=options["seed"],
            providers=options["providers"],
            nodes=options["nodes"],
            buyers=options["buyers"],
            orders=options["orders"],
            fault_rate=options["fault_rate"],
            never_reporting=options["never_reporting"],
            real_agents=options["real_agents"],
            speed=options["speed"],
            start=dt.datetime.fromisoformat(options["start"]),
            step=options["step"],
        )
        try:
            with _progress(console, quiet=options["quiet"], start=sim.start, step=sim.step) as tick:
                cast, model, observations = simulate(sim, tasks_factory=factory, progress=tick)
            report = report_build(options=sim, cast=cast, model=model, observations=observations)
        finally:
            stripe.stop()
        report.wall = {
            "wall time (s)": round(time.monotonic() - wall_start, 1),
            "simulated hours per wall minute": round(
                sim.hours / max((time.monotonic() - wall_start) / 60, 1e-9), 2
            ),
        }
        report_print(report, console)
        html_path = Path(options["html"])
        html_path = html_path if html_path.is_absolute() else settings.BASE_DIR / html_path
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(report_html(report), encoding="utf-8")
        console.print(f"HTML report: {html_path}")
        if options["json"]:
            Path(options["json"]).write_text(
                json.dumps(report.comparable(), ensure_ascii=False, indent=1, default=str)
            )
        if not report.ok:
            console.print("[bold red]An invariant failed.[/]")
            sys.exit(1)


class _progress:
    """A rich progress bar showing the simulated time and the market's pulse."""

    def __init__(self, console, *, quiet: bool, start: dt.datetime, step: int) -> None:
        self.console, self.quiet, self.start, self.step = console, quiet, start, step

    def __enter__(self):
        if self.quiet:
            return lambda done, total, figures: None
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[pulse]}"),
            console=self.console,
        )
        self.bar.start()
        self.task = self.bar.add_task("simulating", total=None, pulse="")
        return self.tick

    def tick(self, done: int, total: int, figures: dict) -> None:
        at = self.start + dt.timedelta(seconds=(done - 1) * self.step)
        self.bar.update(
            self.task,
            completed=done,
            total=total,
            description=at.strftime("%d %b %H:%M"),
            pulse=f"orders {figures['orders']} · filled {figures['filled']} · "
            f"utilisation {figures['utilisation']:.0%} · samples {figures['samples']:,}",
        )

    def __exit__(self, *exc) -> None:
        if not self.quiet:
            self.bar.stop()


def _postgres_recreate(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
