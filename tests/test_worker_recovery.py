"""Issue 14: a worker SIGKILLed (with its work-horse) in any step of provisioning or teardown
costs under 90 s, with the production heartbeat, lock and reconcile timings, and leaves exactly
one set of processes per index (none after a teardown).

All steps run at once, one index per step and one worker per index, so the whole file takes
about two minutes rather than one and a half per step.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from provisioning import services
from provisioning.models import PrivateIndex
from provisioning.operations import RESUMING_NOTICE
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

pytestmark = pytest.mark.e2e
RECOVERY_LIMIT_SECONDS = 90


@pytest.mark.django_db(transaction=True)
def test_provisioning_resumes_within_90_seconds_of_a_killed_worker_in_every_step_with_one_set_of_processes(
    team, lead, tmp_path, _local_driver_in_tmp, client
):
    pause_dir = tmp_path / "pause"
    pause_dir.mkdir()
    env = manage_env(_local_driver_in_tmp, STEP_PAUSE_DIR=str(pause_dir))
    indexes = {
        step: services.index_request(team=team, name=f"killed-in-{step}", size="small", requested_by=lead)
        for step in PROVISION_STEPS
    }
    hold_and_kill([(i, step) for step, i in indexes.items()], "provision", env, pause_dir)
    client.force_login(lead)
    notices = set()

    def read_the_page() -> None:
        page = client.get(reverse("index_detail", args=[indexes["shares"].pk])).content.decode()
        notices.update(line.strip() for line in page.splitlines() if RESUMING_NOTICE in line)

    survivors = start_survivors(env, tmp_path)
    try:
        took = wait_all(indexes, {"ready", "failed"}, timeout=120, on_tick=read_the_page)
    finally:
        for proc in survivors:
            stop_process(proc)
    for step, index in indexes.items():
        assert index.state == "ready", f"{step}: {index.error}"
        assert took[step] <= RECOVERY_LIMIT_SECONDS, took
        running, one_set = process_sets(index)
        assert running == one_set, f"{step}: {running} processes, one set is {one_set}"
        assert index.steps.get(name=step).attempts == 2  # resumed from the step that was running
        assert index.steps.get(name="shares").attempts == 1 or step == "shares"
    assert notices, "the page never said it was resuming"


@pytest.mark.django_db(transaction=True)
def test_teardown_finishes_within_90_seconds_of_a_killed_worker_in_every_step_and_leaves_no_process(
    team, lead, tmp_path, _local_driver_in_tmp
):
    pause_dir = tmp_path / "pause"
    pause_dir.mkdir()
    env = manage_env(_local_driver_in_tmp, STEP_PAUSE_DIR=str(pause_dir))
    indexes = {}
    for step in TEARDOWN_STEPS:
        index = PrivateIndex.objects.create(name=f"deleted-in-{step}", team=team, requested_by=lead)
        services.index_provision_perform(index.pk)
        index.refresh_from_db()
        assert index.state == "ready", index.error
        services.index_delete(index=index, actor=lead)
        indexes[step] = index
    hold_and_kill([(i, step) for step, i in indexes.items()], "teardown", env, pause_dir)
    survivors = start_survivors(env, tmp_path)
    try:
        took = wait_all(indexes, {"deleted", "failed"}, timeout=120)
    finally:
        for proc in survivors:
            stop_process(proc)
    for step, index in indexes.items():
        assert index.state == "deleted", f"{step}: {index.error}"
        assert took[step] <= RECOVERY_LIMIT_SECONDS, took
        assert process_sets(index)[0] == 0
        assert index.steps.get(name=step).attempts == 2
