"""Seconds from SIGKILLing a worker (and its work-horse) inside each step to a ready or deleted
index, and the processes each index has afterwards.

    .venv/bin/python bench/recovery.py [--per-step 2]

Real stack, production timings (10 s job heartbeat, 30 s index lock, reconcile every 15 s):
`manage.py rqworker` processes held inside a step by a pause file (tests/recovery_support.py),
killed, then two fresh workers and `manage.py scheduler provisioning.cron` take over, as a
supervisor would restart them. Needs PostgreSQL (BENCH_DATABASE_URL, created if missing) and
Redis (BENCH_REDIS_URL, flushed). Targets: at most 90 s, exactly one set of processes per index.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _create_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-step", type=int, default=2, help="Indexes killed in each step.")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-recovery-"))
    database_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portal_bench_recovery")
    _create_database(database_url)
    os.environ.update(
        DEBUG="1",
        DATABASE_URL=database_url,
        PORTAL_VAR_DIR=str(work),
        LOCAL_DRIVER_DATA_DIR=str(work / "indexes"),
        REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        DJANGO_SETTINGS_MODULE="portal.settings",
    )
    import django

    django.setup()
    import django_rq
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from provisioning import services
    from provisioning.drivers.local_runtime import LocalRuntime
    from provisioning.drivers.local_store import LocalShareStore
    from provisioning.models import PrivateIndex, Team
    from tests.recovery_support import (
        PROVISION_STEPS,
        TEARDOWN_STEPS,
        hold_and_kill,
        manage_env,
        process_sets,
        start_survivors,
        stop_process,
        wait_all,
    )

    call_command("migrate", verbosity=0)
    django_rq.get_connection("default").flushdb()
    PrivateIndex.objects.all().delete()
    user, _ = User.objects.get_or_create(username="bench-lead")
    team, _ = Team.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    pause_dir = work / "pause"
    pause_dir.mkdir()
    env = manage_env(work / "indexes", STEP_PAUSE_DIR=str(pause_dir))
    stamp = int(time.time()) % 100000
    rows: list[tuple[str, list[float], list[str]]] = []

    def run(operation: str, steps: tuple[str, ...], done: str) -> None:
        targets = []
        for step in steps:
            for n in range(args.per_step):
                name = f"r{stamp}-{operation[0]}-{step}-{n}"
                if operation == "provision":
                    index = services.index_request(team=team, name=name, size="small", requested_by=user)
                else:
                    index = PrivateIndex.objects.create(name=name, team=team, requested_by=user)
                    services.index_provision_perform(index.pk)
                    services.index_delete(index=PrivateIndex.objects.get(pk=index.pk), actor=user)
                    index.refresh_from_db()
                targets.append((index, step))
        hold_and_kill(targets, operation, env, pause_dir)
        survivors = start_survivors(env, work)
        try:
            took = wait_all({str(i.pk): i for i, _ in targets}, {done, "failed"}, timeout=300)
        finally:
            for proc in survivors:
                stop_process(proc)
        for step in steps:
            mine = [i for i, s in targets if s == step]
            sets = []
            for index in mine:
                running, one_set = process_sets(index)
                sets.append(
                    f"{running}/{one_set if done == 'ready' else 0}" + ("" if index.state == done else " FAILED")
                )
            rows.append((f"{operation}/{step}", [took[str(i.pk)] for i in mine], sets))

    try:
        run("provision", PROVISION_STEPS, "ready")
        run("teardown", TEARDOWN_STEPS, "deleted")
    finally:
        LocalRuntime(LocalShareStore()).stop_everything()
    print(f"\nWorker + work-horse SIGKILLed inside each step, {args.per_step} index(es) per step (target <= 90 s):")
    print(f"{'step':<24} {'kill -> done, s (each)':<26} {'max s':>6}  processes per index (running/one set)")
    for label, seconds, sets in rows:
        each = ", ".join(f"{s:.1f}" for s in seconds)
        print(f"{label:<24} {each:<26} {max(seconds):>6.1f}  {', '.join(sets)}")
    everything = [s for _, seconds, _ in rows for s in seconds]
    print(
        f"\nall: median {statistics.median(everything):.1f} s, max {max(everything):.1f} s over {len(everything)} kills"
    )


if __name__ == "__main__":
    main()
