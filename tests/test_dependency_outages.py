"""Issue 14: PostgreSQL or Redis down or hung. /health/ answers 503 naming which within 5 s,
commands say so in one line and leave nothing half-requested, and the worker and the scheduler
ride out a Redis restart and a 15 s hang (a private redis-server: the machine's is never touched)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.db import connection
from rq import Queue
from rq.cron import get_cron_job_ids

from provisioning.models import PrivateIndex
from tests.recovery_support import MANAGE, ROOT, manage_env, start_manage, stop_process


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def hung_server() -> Iterator[int]:
    """A port whose server accepts connections (the kernel completes the handshake) and never
    answers: what a stopped or wedged PostgreSQL or Redis looks like to a client."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    return _free_port()


def test_health_answers_503_within_5_seconds_naming_a_hung_database_and_a_down_redis(
    client, settings, monkeypatch, hung_server, closed_port
):
    monkeypatch.setitem(connection.settings_dict, "HOST", "127.0.0.1")
    monkeypatch.setitem(connection.settings_dict, "PORT", hung_server)
    settings.RQ_QUEUES = {**settings.RQ_QUEUES, "default": {"URL": f"redis://127.0.0.1:{closed_port}/0"}}
    start = time.monotonic()
    response = client.get("/health/")
    assert time.monotonic() - start < 5
    assert response.status_code == 503
    body = response.json()
    assert body["database"].startswith(f"error: PostgreSQL at 127.0.0.1:{hung_server}")
    assert body["redis"].startswith(f"error: Redis at 127.0.0.1:{closed_port}")


def test_health_names_a_hung_redis_within_5_seconds(client, settings, hung_server, db):
    settings.RQ_QUEUES = {**settings.RQ_QUEUES, "default": {"URL": f"redis://127.0.0.1:{hung_server}/0"}}
    start = time.monotonic()
    response = client.get("/health/")
    assert time.monotonic() - start < 5
    assert response.status_code == 503
    assert response.json()["database"] == "ok"
    assert "Redis" in response.json()["redis"]


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_create_index_with_redis_down_says_so_in_one_line_and_records_nothing(team, _local_driver_in_tmp, closed_port):
    env = manage_env(_local_driver_in_tmp, REDIS_URL=f"redis://127.0.0.1:{closed_port}/0")
    result = subprocess.run(
        [*MANAGE, "create_index", "--team", team.slug, "--name", "no-redis"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"CommandError: Cannot reach Redis at 127.0.0.1:{closed_port}")
    assert lines[0].endswith("Nothing was created.")
    assert not PrivateIndex.objects.exists()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_command_with_postgresql_down_says_so_in_one_line(_local_driver_in_tmp, closed_port):
    env = manage_env(_local_driver_in_tmp, DATABASE_URL=f"postgres://postgres@127.0.0.1:{closed_port}/portal")
    result = subprocess.run(
        [*MANAGE, "list_indexes"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: Cannot reach PostgreSQL at 127.0.0.1:{closed_port}")


@contextlib.contextmanager
def private_redis(port: int, folder: Path) -> Iterator[subprocess.Popen]:
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder)],
        stdout=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    client = redis.Redis(port=port, socket_timeout=1)
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(redis.exceptions.ConnectionError):
            client.ping()
            break
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    try:
        yield server
    finally:
        server.kill()
        server.wait()


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_the_worker_and_the_scheduler_ride_out_a_redis_restart_and_a_15_second_hang(_local_driver_in_tmp, tmp_path):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = _free_port()
    env = manage_env(_local_driver_in_tmp, REDIS_URL=f"redis://127.0.0.1:{port}/0", RECONCILE_INTERVAL_SECONDS="2")
    client = redis.Redis(port=port, socket_timeout=5)
    queue = Queue("provisioning", connection=client)

    def reconciles() -> int:
        return len(get_cron_job_ids("reconcile-indexes", client))

    def a_job_runs() -> None:
        job = queue.enqueue("provisioning.jobs.reconcile_indexes", result_ttl=600)
        _wait(lambda: job.get_status(refresh=True) == "finished", 30, "the worker did not run a new job")

    with private_redis(port, tmp_path) as server:
        worker = start_manage(env, "rqworker", "provisioning", log=tmp_path / "worker.log")
        scheduler = start_manage(env, "scheduler", "provisioning.cron", log=tmp_path / "scheduler.log")
        try:
            _wait(lambda: reconciles() >= 1, 30, "the scheduler never enqueued")
            a_job_runs()

            server.kill()  # a restart: Redis gone for 3 s, and its data with it (no persistence)
            server.wait()
            time.sleep(3)
            with private_redis(port, tmp_path) as server:
                _wait(lambda: reconciles() >= 1, 60, "the scheduler did not carry on after the restart")
                a_job_runs()

                os.kill(server.pid, signal.SIGSTOP)  # a 15 s hang
                time.sleep(15)
                os.kill(server.pid, signal.SIGCONT)
                before = reconciles()
                _wait(lambda: reconciles() > before, 60, "the scheduler did not carry on after the hang")
                a_job_runs()
                assert worker.poll() is None and scheduler.poll() is None
        finally:
            stop_process(worker)
            stop_process(scheduler)
