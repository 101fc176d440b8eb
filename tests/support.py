"""Helpers for tests that start real processes on free loopback ports."""

import contextlib
import socket
import time
import urllib.error
import urllib.request


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
