"""Killing real `rqworker` processes inside a chosen step, for tests/test_worker_recovery.py
and bench/recovery.py.

A step is held at a pause point (provisioning/pause.py): for the steps that start processes,
right after a process is spawned and before it is recorded (where a kill used to leave a process
the driver did not know about); for the others, as the step starts. The worker and its
work-horse (which runs the job, in its own process group) are then SIGKILLed together.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import connection

from provisioning.drivers import local_processes
from provisioning.drivers.local import LocalDriver
from provisioning.models import PrivateIndex
from provisioning.spec import ContainerSpec, Placement, build_index_spec

ROOT = Path(__file__).resolve().parent.parent
MANAGE = (sys.executable, "manage.py")
PROVISION_STEPS = ("shares", "config", "pypiserver", "caddy", "health", "credentials")
TEARDOWN_STEPS = ("stop", "remove-shares", "confirm")


def manage_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """Point a child process at this database, Redis db and index folder."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("postgresql"):
        url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    else:
        url = f"sqlite:///{db['NAME']}"
    env = {k: v for k, v in os.environ.items() if k not in {"REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"}}
    env.update(
        DATABASE_URL=url,
        REDIS_URL=settings.REDIS_URL,
        LOCAL_DRIVER_DATA_DIR=str(data_dir),
        LOCAL_DRIVER_PORT_RANGE=settings.LOCAL_DRIVER_PORT_RANGE,
        PORTAL_VAR_DIR=str(data_dir.parent / "var"),
    )
    env.update(extra)
    return env


def start_manage(env: dict[str, str], *args: str, log: Path | None = None) -> subprocess.Popen:
    out = open(log, "ab") if log else subprocess.DEVNULL
    return subprocess.Popen(
        [*MANAGE, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _containers(index: PrivateIndex) -> tuple[ContainerSpec, ...]:
    """The index's containers (names and kinds only matter here, so any placement will do)."""
    ports = {f.name: 1 for f in dataclasses.fields(Placement) if f.type in ("int", int)}
    placement = Placement(hostname="localhost", tls="internal", **ports)
    spec = build_index_spec(index_id=index.pk, name=index.name, team="t", size=index.size, placement=placement)
    return spec.containers


def pause_point_for(index: PrivateIndex, operation: str, step: str) -> str:
    containers = _containers(index)
    public = [c for c in containers if c.ports]
    if operation == "provision" and step == "pypiserver":
        return f"{index.pk}-spawned-{next(c for c in containers if c not in public).name}"
    if operation == "provision" and step == "caddy":
        return f"{index.pk}-spawned-{public[0].name}"
    return f"{index.pk}-{operation}-{step}"


def wait_for_files(paths: list[Path], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        if time.monotonic() > deadline:
            missing = [p.name for p in paths if not p.exists()]
            raise AssertionError(f"Pause points not reached within {timeout} s: {missing}")
        time.sleep(0.05)


def kill_worker_and_horse(worker: subprocess.Popen) -> None:
    """SIGKILL the worker and its work-horse (children in other process groups) at once."""
    children = []
    for task in Path(f"/proc/{worker.pid}/task").iterdir():
        children += [int(pid) for pid in (task / "children").read_text().split()]
    for pid in [worker.pid, *children]:
        os.kill(pid, signal.SIGKILL)
    worker.wait()


def hold_and_kill(
    targets: list[tuple[PrivateIndex, str]], operation: str, env: dict[str, str], pause_dir: Path
) -> None:
    """Hold each index's job inside its step (one worker per index), then SIGKILL every worker
    and work-horse, and open the gates for whoever resumes the work."""
    gates = [pause_dir / pause_point_for(index, operation, step) for index, step in targets]
    for gate in gates:
        gate.touch()
    workers = [start_manage(env, "rqworker", "provisioning") for _ in targets]
    try:
        wait_for_files([gate.with_name(f"{gate.name}.reached") for gate in gates], timeout=90)
    finally:
        for worker in workers:
            kill_worker_and_horse(worker)
        for gate in gates:
            gate.unlink()


def start_survivors(env: dict[str, str], log_dir: Path, workers: int = 2) -> list[subprocess.Popen]:
    """What production runs after the kill: restarted workers and the one scheduler."""
    procs = [start_manage(env, "rqworker", "provisioning", log=log_dir / f"worker-{n}.log") for n in range(workers)]
    return [*procs, start_manage(env, "scheduler", "provisioning.cron", log=log_dir / "scheduler.log")]


def process_sets(index: PrivateIndex) -> tuple[int, int]:
    """(processes of the index running now, processes one set has)."""
    folder = LocalDriver().runtime.index_dir(index.pk, index.name)
    return len(local_processes.processes_under(folder)), len(_containers(index))


def wait_all(
    indexes: dict[str, PrivateIndex], states: set[str], timeout: float, on_tick: Callable[[], None] | None = None
) -> dict[str, float]:
    """Seconds until each index reaches one of `states` (raises after `timeout`)."""
    start = time.monotonic()
    took: dict[str, float] = {}
    while len(took) < len(indexes):
        for key, index in indexes.items():
            if key not in took:
                index.refresh_from_db()
                if index.state in states:
                    took[key] = time.monotonic() - start
        if on_tick:
            on_tick()
        if time.monotonic() - start > timeout:
            left = {k: i.state for k, i in indexes.items() if k not in took}
            raise AssertionError(f"Still not {states} after {timeout:.0f} s: {left}")
        time.sleep(0.2)
    return took
