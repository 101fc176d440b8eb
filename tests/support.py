"""Helpers for tests that start real processes on free loopback ports."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, *, timeout: float = 60.0, process=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 - loopback only
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def openapi_document() -> dict:
    """The project's OpenAPI schema, as /api/schema/ serves it (JSON)."""
    import json

    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    schema = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(schema, renderer_context={}))


class InProcessWSGI:
    """Django's WSGI application for in-process clients (werkzeug, schemathesis)
    inside a test's transaction: like django.test.Client, it keeps Django from
    closing the test's database connection at the end of each request."""

    def __init__(self) -> None:
        from django.core.handlers.wsgi import WSGIHandler

        self.handler = WSGIHandler()

    def __call__(self, environ, start_response):
        from django.core.signals import request_finished, request_started
        from django.db import close_old_connections

        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        try:
            response = self.handler(environ, start_response)
            try:
                return [b"".join(response)]
            finally:
                response.close()
        finally:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)


@contextlib.contextmanager
def check_constraint_suspended(model, name: str):
    """Write rows a CHECK constraint refuses, as data written before the
    constraint existed would be. PostgreSQL drops the constraint inside the
    test's transaction (rolled back with it); SQLite ignores CHECKs meanwhile."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # deferred foreign-key checks of rows written earlier would block the ALTER
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(
                f'ALTER TABLE "{model._meta.db_table}" DROP CONSTRAINT IF EXISTS "{name}"'
            )
            yield
        else:
            cursor.execute("PRAGMA ignore_check_constraints = ON")
            try:
                yield
            finally:
                cursor.execute("PRAGMA ignore_check_constraints = OFF")


@contextlib.contextmanager
def celery_broker(url: str | None):
    """Point this process's Celery app at the broker `url` (tasks are then sent,
    not run), or with None back to in-process eager tasks; restored on exit."""
    from config.celery import app

    before = (app.conf.broker_url, app.conf.task_always_eager, app.conf.task_eager_propagates)
    _reset_broker_pools(app)
    app.conf.broker_url = url or "memory://"
    app.conf.task_always_eager = url is None
    app.conf.task_eager_propagates = url is None
    try:
        yield app
    finally:
        _reset_broker_pools(app)
        app.conf.broker_url, app.conf.task_always_eager, app.conf.task_eager_propagates = before


def _reset_broker_pools(app) -> None:
    from kombu import pools

    pools.reset()  # closes and forgets every broker connection of this process
    app._pool = None
    app.amqp._producer_pool = None


def unused_redis_url() -> str:
    """A Redis URL on a loopback port nothing listens on: a broker that is down."""
    return f"redis://127.0.0.1:{free_port()}/0"


class RedisServer:
    """Our own redis-server on a free loopback port, without persistence (as a
    broker that loses its queue when killed), for tests that kill it."""

    def __init__(self, *, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, timeout: float = 20.0) -> "RedisServer":
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def kill(self) -> None:
        """kill -9: whatever was queued is gone (no RDB, no AOF)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def queued(self, queue: str | None = None) -> int:
        """Messages waiting in `queue`, or in every queue of the exchange."""
        import redis
        from django.conf import settings

        client = redis.Redis(host="127.0.0.1", port=self.port)
        queues = [queue] if queue else settings.EXCHANGE_CELERY_QUEUES
        return sum(client.llen(name) for name in queues)


def celery_worker_start(*, env: dict[str, str], log: Path, name: str) -> subprocess.Popen:
    """One prefork Celery worker (concurrency 1) of this project, consuming every
    queue (settings.EXCHANGE_CELERY_QUEUES), in its own process group so a test
    can SIGKILL the whole worker; its output is appended to `log`."""
    from django.conf import settings

    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            "1",
            "--queues",
            ",".join(settings.EXCHANGE_CELERY_QUEUES),
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"{name}-{uuid.uuid4().hex[:8]}@%h",
        ],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


# Settings a production deployment would give: real-looking secrets, Redis, no demo value.
# Tests of the production checks start from it and remove or spoil one value.
PRODUCTION_ENV = {
    "EXCHANGE_ENV": "production",
    "SECRET_KEY": "a" * 20 + "-production-secret-key-for-the-deploy-check-" + "z" * 10,
    "ALLOWED_HOSTS": "exchange.example.cn",
    "DATABASE_URL": "sqlite:////tmp/deploy-check.sqlite3",
    "REDIS_URL": "redis://127.0.0.1:6379/0",  # `check` reads it, never connects
    "PATH": "/usr/bin:/bin",
    "STRIPE_SECRET_KEY": "sk_live_51Hx" + "k" * 90,
    "STRIPE_PUBLISHABLE_KEY": "pk_live_51Hx" + "p" * 90,
    "STRIPE_WEBHOOK_SECRET": "whsec_" + "w" * 32,
    "TRAIL_SIGNING_KEY": "5a" * 32,
    "PAYOUT_BANK_ACCOUNT": "6222000012345678",
}


def manage_check(env: dict[str, str], *, deploy: bool = True) -> subprocess.CompletedProcess:
    """`manage.py check [--deploy --fail-level WARNING]` in a fresh process with exactly `env`."""
    command = [sys.executable, "manage.py", "check"]
    if deploy:
        command += ["--deploy", "--fail-level", "WARNING"]
    return subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
