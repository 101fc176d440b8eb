"""The load benchmark against a primary + a real PostgreSQL streaming replica,
both started here on loopback in a temporary directory, then removed.

    .venv/bin/python bench/replica.py [load.py options]

A primary cluster (initdb, replication allowed from 127.0.0.1) and a replica
cloned from it with `pg_basebackup -R` (streaming, hot standby) run on free
ports; bench/load.py runs twice on them with the same options: primary alone,
then with DATABASE_REPLICA_URL pointing at the replica (read-only views read
there: core/db.py). Between the runs, how many transactions the replica served
and how far its replay is behind show that the reads went there. PostgreSQL refuses to run
as root: as root, the clusters run as the `postgres` user.
The last line printed is one JSON object.
"""

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def pg_bin() -> Path:
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
    if out.returncode == 0 and out.stdout.strip():
        return Path(out.stdout.strip())
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not found:
        sys.exit("PostgreSQL server binaries not found (initdb, pg_ctl, pg_basebackup)")
    return found[-1]


def as_postgres(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    return subprocess.run(argv, check=True, **kwargs)


def psql(port: int, sql: str, db: str = "postgres") -> str:
    out = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", db, "-Atc", sql],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def wait_ready(port: int) -> None:
    for _ in range(100):
        ok = subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", str(port)], capture_output=True)
        if ok.returncode == 0:
            return
        time.sleep(0.2)
    sys.exit(f"PostgreSQL on port {port} did not start")


def load(args: list[str], env: dict) -> dict:
    out = subprocess.run(
        [sys.executable, str(HERE / "load.py"), *args],
        env=env,
        capture_output=True,
        text=True,
    )
    sys.stdout.write(out.stdout)
    if out.returncode:
        sys.stderr.write(out.stderr[-4000:])
        sys.exit("bench/load.py failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from tests.support import free_port

    bindir = pg_bin()
    tmp = Path(tempfile.mkdtemp(prefix="replica-bench-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(tmp, user.pw_uid, user.pw_gid)
    primary, replica = tmp / "primary", tmp / "replica"
    p_port, r_port = free_port(), free_port()
    ctl = str(bindir / "pg_ctl")
    started: list[Path] = []
    try:
        as_postgres(
            [str(bindir / "initdb"), "-D", str(primary), "-U", "postgres", "--auth=trust"],
            stdout=subprocess.DEVNULL,
        )
        with open(primary / "pg_hba.conf", "a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")
        options = f"-p {p_port} -c listen_addresses=127.0.0.1 -k {tmp} -c shared_buffers=256MB"
        as_postgres(
            [ctl, "-D", str(primary), "-o", options, "-l", str(tmp / "primary.log"), "start"]
        )
        started.append(primary)
        wait_ready(p_port)
        psql(p_port, "CREATE DATABASE exchange_load")
        as_postgres(
            [
                str(bindir / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(p_port),
                "-U",
                "postgres",
                "-D",
                str(replica),
                "-R",
                "-X",
                "stream",
            ]
        )
        options = f"-p {r_port} -c listen_addresses=127.0.0.1 -k {tmp} -c hot_standby=on"
        as_postgres(
            [ctl, "-D", str(replica), "-o", options, "-l", str(tmp / "replica.log"), "start"]
        )
        started.append(replica)
        wait_ready(r_port)
        assert psql(r_port, "SELECT pg_is_in_recovery()") == "t"
        print(f"primary on 127.0.0.1:{p_port}, streaming replica on 127.0.0.1:{r_port}")
        primary_url = f"postgres://postgres@127.0.0.1:{p_port}/exchange_load"
        replica_url = f"postgres://postgres@127.0.0.1:{r_port}/exchange_load"
        env = {**os.environ, "DATABASE_URL": primary_url}
        print("\n=== primary alone ===")
        alone = load(sys.argv[1:], env)
        before = int(
            psql(r_port, "SELECT xact_commit FROM pg_stat_database WHERE datname = 'exchange_load'")
        )
        print("\n=== primary + replica ===")
        both = load([*sys.argv[1:], "--replica-url", replica_url], env)
        after = int(
            psql(r_port, "SELECT xact_commit FROM pg_stat_database WHERE datname = 'exchange_load'")
        )
        primary_lsn = psql(p_port, "SELECT pg_current_wal_lsn()")
        behind = int(
            float(
                psql(r_port, f"SELECT pg_wal_lsn_diff('{primary_lsn}', pg_last_wal_replay_lsn())")
            )
        )
        served = after - before
        print(
            f"\nthe replica served {served:,} transactions during the second run; "
            f"it replays {max(0, behind):,} bytes of WAL behind the primary"
        )

        def p99(result: dict, scenario: str, endpoint: str):
            return result["scenarios"].get(scenario, {}).get(endpoint, {}).get("p99_ms")

        summary = {
            "replica_transactions": served,
            "replica_bytes_behind": max(0, behind),
            "search_p99_ms": {
                "primary": p99(alone, "search", "search"),
                "replica": p99(both, "search", "search"),
            },
            "board_p99_ms": {
                "primary": p99(alone, "board", "board"),
                "replica": p99(both, "board", "board"),
            },
            "bare_p99_ms": {
                "primary": p99(alone, "bare", "bare"),
                "replica": p99(both, "bare", "bare"),
            },
            "errors": alone["errors"] + both["errors"],
            "primary_alone": alone,
            "with_replica": both,
        }
        print(json.dumps(summary))
    finally:
        for cluster in reversed(started):
            as_postgres([ctl, "-D", str(cluster), "-m", "fast", "stop"], stdout=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
