"""Provisioning through RQ with the real Redis and the real local driver (pypiserver + Caddy)."""

from __future__ import annotations

import socket
from datetime import timedelta

import django_rq
import pytest
from django.urls import reverse
from django.utils import timezone
from rq.job import Job, JobStatus

from portal.queueing import HEARTBEAT_MISSED_AFTER_SECONDS, queue_now
from provisioning import operations, services
from provisioning.drivers.backend import get_runtime
from provisioning.models import PrivateIndex
from tests.driver_support import get_driver

pytestmark = pytest.mark.e2e


def _hold_four_consecutive_ports() -> tuple[list[socket.socket], int]:
    for base in range(29000, 29900, 4):
        held = []
        for port in range(base, base + 4):
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                break
            held.append(sock)
        if len(held) == 4:
            return held, base
        for sock in held:
            sock.close()
    raise RuntimeError("no four consecutive free ports")


def _request(lead, team, name="jobs-index"):
    return services.index_request(team=team, name=name, size="small", requested_by=lead)


def test_a_requested_index_becomes_ready_with_every_step_recorded(
    lead, team, run_jobs, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        index = _request(lead, team)
    with django_capture_on_commit_callbacks(execute=True):
        assert run_jobs() == 1
    index.refresh_from_db()
    assert index.state == "ready", index.error
    assert index.url.startswith("https://localhost:") and index.url.endswith("/simple/")
    steps = list(index.steps.values_list("name", "state"))
    assert steps == [
        ("shares", "done"), ("config", "done"), ("pypiserver", "done"),
        ("caddy", "done"), ("health", "done"), ("credentials", "done"),
    ]  # fmt: skip
    assert all(step.finished_at >= step.started_at for step in index.steps.all())
    assert get_driver().status(services.index_spec(index)).is_running
    # The first certificate check is queued at once, not left to the next scheduled run.
    assert f"index-{index.pk}-check" in django_rq.get_queue("default").job_ids


def test_the_detail_page_shows_progress_then_the_address_and_ca(
    lead_client, lead, team, run_jobs, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        index = _request(lead, team)
    partial = lead_client.get(f"{index.get_absolute_url()}?part=progress", headers={"HX-Request": "true"})
    assert 'hx-trigger="every 1s"' in partial.content.decode()  # polls while active
    assert "HX-Refresh" not in partial
    run_jobs()
    finished = lead_client.get(f"{index.get_absolute_url()}?part=progress", headers={"HX-Request": "true"})
    assert finished["HX-Refresh"] == "true"  # the whole page changes once the work is over
    page = lead_client.get(index.get_absolute_url()).content.decode()
    index.refresh_from_db()
    assert index.url in page and "every 1s" not in page
    ca = lead_client.get(reverse("index_ca_certificate", args=[index.pk]))
    assert ca.status_code == 200 and b"BEGIN CERTIFICATE" in ca.content


def test_an_exhausted_port_range_fails_the_index_with_a_clear_error_and_retry_works(
    lead, team, settings, run_jobs, django_capture_on_commit_callbacks
):
    # Hold every port of a 4-port range so nothing is free.
    holders, base = _hold_four_consecutive_ports()
    settings.LOCAL_DRIVER_PORT_RANGE = f"{base}-{base + 3}"
    try:
        with django_capture_on_commit_callbacks(execute=True):
            index = _request(lead, team)
        run_jobs()
    finally:
        for sock in holders:
            sock.close()
    index.refresh_from_db()
    assert index.state == "failed"
    assert index.failed_step == "reserve"
    assert "No free ports" in index.error and f"{base}-{base + 3}" in index.error

    settings.LOCAL_DRIVER_PORT_RANGE = f"{base}-{base + 3}"  # the same range, now free
    with django_capture_on_commit_callbacks(execute=True):
        services.index_retry(index=index, actor=lead)
    run_jobs()
    index.refresh_from_db()
    assert index.state == "ready", index.error


def test_a_server_that_cannot_start_fails_at_its_step_and_leaves_nothing_running(
    lead, team, settings, run_jobs, django_capture_on_commit_callbacks, tmp_path
):
    # Caddy's https port is taken by someone else once the ports are reserved.
    with django_capture_on_commit_callbacks(execute=True):
        index = _request(lead, team)
    placement = get_runtime().reserve(index_id=index.pk, name=index.name, previous=None)
    PrivateIndex.objects.filter(pk=index.pk).update(deployment=placement.as_dict())
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", placement.https_port))
    squatter.listen()
    settings.INDEX_HEALTH_TIMEOUT_SECONDS = 3
    try:
        run_jobs()
        index.refresh_from_db()
        assert index.state == "failed"
        assert index.failed_step in {"caddy", "health"}
        assert index.error
        status = get_runtime().status(services.index_spec(index))
        assert all(c.state != "running" for c in status.containers), status
    finally:
        squatter.close()
    # The port is free again: Retry resumes from the failed step and finishes.
    with django_capture_on_commit_callbacks(execute=True):
        services.index_retry(index=index, actor=lead)
    run_jobs()
    index.refresh_from_db()
    assert index.state == "ready", index.error
    assert index.steps.get(name="shares").attempts == 1  # done steps were not run again


def test_missing_binaries_fail_the_index_with_a_readable_reason(
    lead, team, settings, run_jobs, django_capture_on_commit_callbacks, tmp_path
):
    settings.LOCAL_DRIVER_BIN_DIR = tmp_path / "nowhere"
    with django_capture_on_commit_callbacks(execute=True):
        index = _request(lead, team)
    run_jobs()
    index.refresh_from_db()
    assert index.state == "failed" and index.failed_step == "pypiserver"
    assert "is not installed" in index.error


def test_restart_and_teardown_run_as_jobs_and_teardown_leaves_nothing(
    ready_index, lead, run_jobs, django_capture_on_commit_callbacks, _local_driver_in_tmp
):
    driver = get_runtime()
    spec = services.index_spec(ready_index)
    with django_capture_on_commit_callbacks(execute=True):
        services.index_restart(index=ready_index, actor=lead)
    run_jobs()
    ready_index.refresh_from_db()
    assert ready_index.state == "ready" and driver.status(spec).is_running
    with django_capture_on_commit_callbacks(execute=True):
        services.index_delete(index=ready_index, actor=lead)
    run_jobs()
    ready_index.refresh_from_db()
    assert ready_index.state == "deleted"
    assert driver.status(spec).state == "missing"
    assert list(_local_driver_in_tmp.iterdir()) == [_local_driver_in_tmp / ".ports.lock"]


def test_reconcile_brings_back_a_ready_index_whose_processes_died(ready_index):
    driver = get_runtime()
    spec = services.index_spec(ready_index)
    driver.halt(spec)
    assert driver.status(spec).state == "stopped"
    assert services.index_reconcile()["revived"] == 1
    assert driver.status(spec).is_running


def test_reconcile_requeues_an_index_stuck_in_provisioning_with_no_job(
    lead, team, run_jobs, django_capture_on_commit_callbacks
):
    index = PrivateIndex.objects.create(name="stuck", team=team, requested_by=lead, state="provisioning")
    with django_capture_on_commit_callbacks(execute=True):
        counts = services.index_reconcile()
    assert counts["requeued"] == 1
    run_jobs()
    index.refresh_from_db()
    assert index.state == "ready", index.error


def test_a_second_job_for_the_same_index_is_not_queued_while_one_waits(lead, team, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        index = _request(lead, team)
    with django_capture_on_commit_callbacks(execute=True):
        operations.operation_enqueue(index, "provision")
    assert django_rq.get_queue("provisioning").job_ids == [f"index-{index.pk}-provision"]


def test_a_revival_or_a_death_reaches_the_dashboard_at_the_next_reconcile_not_the_next_fleet_check(
    ready_index, run_jobs, django_capture_on_commit_callbacks
):
    driver, spec = get_runtime(), services.index_spec(ready_index)
    driver.halt(spec)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.index_reconcile()["revived"] == 1
    run_jobs("default")
    assert ready_index.certificate_checks.first().container_state == "running"

    driver.halt(spec)
    with socket.socket() as squatter:  # Caddy cannot come back: the death shows instead
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the check's connections linger
        squatter.bind(("127.0.0.1", spec.placement.https_port))
        squatter.listen()
        with django_capture_on_commit_callbacks(execute=True):
            assert services.index_reconcile()["errors"] == 1
        run_jobs("default")
    assert ready_index.certificate_checks.first().container_state != "running"
    assert ready_index.certificate_checks.count() == 2


def test_a_started_job_whose_worker_stopped_heartbeating_is_not_alive_and_is_queued_again(
    lead, team, lead_client, django_capture_on_commit_callbacks
):
    index = PrivateIndex.objects.create(name="orphaned", team=team, requested_by=lead, state="provisioning")
    queue = queue_now("provisioning")
    job = queue.enqueue("provisioning.jobs.provision_index", index.pk, job_id=f"index-{index.pk}-provision")
    queue.remove(job)
    # What a SIGKILLed worker leaves: "started", its last heartbeat long ago.
    job.worker_name = "killed-worker"
    job.last_heartbeat = timezone.now() - timedelta(seconds=HEARTBEAT_MISSED_AFTER_SECONDS + 5)
    job.save()
    job.set_status(JobStatus.STARTED)
    assert not services.has_live_job(index)
    assert "Resuming after a worker stopped" in lead_client.get(index.get_absolute_url()).content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        assert services.index_reconcile()["requeued"] == 1
    assert queue.job_ids == [job.id]
    assert Job.fetch(job.id, connection=queue.connection).get_status() == JobStatus.QUEUED
    assert "Resuming after a worker stopped" in lead_client.get(index.get_absolute_url()).content.decode()


def test_requesting_an_index_while_redis_is_down_answers_503_in_one_line_and_records_nothing(
    lead_client, team, monkeypatch
):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    monkeypatch.setitem(
        django_rq.settings.QUEUES, "provisioning", {"URL": f"redis://127.0.0.1:{closed}/0?socket_connect_timeout=2"}
    )
    response = lead_client.post(reverse("index_new"), {"name": "no-redis", "team": team.pk, "size": "small"})
    assert response.status_code == 503
    assert response.content.decode().strip().startswith("Cannot reach Redis at ")
    assert len(response.content.decode().strip().splitlines()) == 1
    assert not PrivateIndex.objects.filter(name="no-redis").exists()
