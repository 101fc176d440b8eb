"""The on-disk sample buffer and the persistent sequence counter, in one SQLite file.

Every sample is written here the moment it is taken and deleted only after the exchange
answered 2xx (or rejected it for good), so a crash, an outage or a restart loses nothing.
The next sequence number lives in the same database and is advanced in the same
transaction as the insert: a seq is never handed out twice, even across a crash.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from agent.readings import Reading

log = logging.getLogger(__name__)

DB_NAME = "buffer.sqlite3"
LOCK_NAME = "agent.lock"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sample (seq INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('next_seq', 1);
"""


class StateDirBusy(RuntimeError):
    """Another agent already uses this state directory."""


class SampleBuffer:
    def __init__(self, state_dir: Path, *, max_samples: int) -> None:
        if max_samples < 1:
            raise ValueError("max_samples must be at least 1")
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = _lock_state_dir(state_dir)
        self._max_samples = max_samples
        # Autocommit mode; transactions are opened explicitly with BEGIN IMMEDIATE. The agent
        # samples on one thread and sends on another: one connection, used under one lock.
        self._db = sqlite3.connect(
            state_dir / DB_NAME, isolation_level=None, check_same_thread=False
        )
        self._mutex = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL makes each commit durable against power loss, not just a process crash.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        # Counted once, then kept in step by this process: the lock makes it the only writer,
        # and count(*) over a large backlog costs tens of milliseconds each time.
        self._count = int(self._db.execute("SELECT count(*) FROM sample").fetchone()[0])

    def close(self) -> None:
        with self._mutex:
            self._db.close()
        self._lock.close()

    def __enter__(self) -> SampleBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def next_seq(self) -> int:
        with self._mutex:
            return int(
                self._db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0]
            )

    def __len__(self) -> int:
        return self._count

    def append(self, readings: Sequence[Reading], *, ts: float) -> list[int]:
        """Number the readings with fresh seqs, store them durably, return their seqs."""
        if not readings:
            return []
        with self._mutex:
            with self._transaction():
                first = self.next_seq
                seqs = list(range(first, first + len(readings)))
                self._db.executemany(
                    "INSERT INTO sample (seq, body) VALUES (?, ?)",
                    [
                        (seq, _dumps(r.to_sample(seq=seq, ts=ts)))
                        for seq, r in zip(seqs, readings, strict=True)
                    ],
                )
                self._db.execute("UPDATE meta SET value=? WHERE key='next_seq'", (seqs[-1] + 1,))
                dropped = self._trim(next_seq=seqs[-1] + 1)
            self._count += len(seqs) - dropped
        if dropped:
            log.warning(
                "buffer full (%d samples): dropped the %d oldest", self._max_samples, dropped
            )
        return seqs

    def oldest(self, limit: int) -> list[dict[str, Any]]:
        """The oldest buffered samples, in seq order (the order they must be sent in)."""
        with self._mutex:
            rows = self._db.execute(
                "SELECT body FROM sample ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [json.loads(body) for (body,) in rows]

    def remove(self, samples: Sequence[dict[str, Any]]) -> None:
        with self._mutex:
            with self._transaction():
                cursor = self._db.executemany(
                    "DELETE FROM sample WHERE seq=?", [(s["seq"],) for s in samples]
                )
            self._count -= cursor.rowcount

    def _trim(self, *, next_seq: int) -> int:
        # Each seq is one sample, so the newest max_samples are exactly the seqs above this.
        cursor = self._db.execute(
            "DELETE FROM sample WHERE seq < ?", (next_seq - self._max_samples,)
        )
        return cursor.rowcount

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")


def _dumps(sample: dict[str, Any]) -> str:
    # allow_nan=False: NaN is not JSON and the exchange would reject the whole batch.
    return json.dumps(sample, separators=(",", ":"), allow_nan=False)


def _lock_state_dir(state_dir: Path) -> IO[str]:
    """Hold an exclusive lock for the life of the agent: two agents on one state dir would
    post the same buffered samples twice over and confuse anyone reading the logs."""
    handle = open(state_dir / LOCK_NAME, "a")  # noqa: SIM115 - held open until close()
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise StateDirBusy(f"another agent is running with state dir {state_dir}") from exc
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
