"""The operation runner (provisioning/operations.py): transient driver errors are retried in the
same job with backoff and the step says so meanwhile; permanent ones fail at once with their
message; a refresh goes through the same lock and retry policy but never fails the index."""

from __future__ import annotations

import django_rq
import pytest

from packages_ui import services as package_services
from portal.models import AuditEvent
from provisioning import operations, services
from provisioning.drivers.backend import get_runtime, get_store
from provisioning.drivers.base import DriverError
from provisioning.drivers.runtime import DeployStep
from provisioning.models import PrivateIndex, ProvisioningStep
from provisioning.spec import Placement

pytestmark = pytest.mark.django_db


@pytest.fixture
def placed_index(team, lead) -> PrivateIndex:
    """A ready index with a placement on this machine; nothing runs (the tests stand in for the driver)."""
    placement = Placement(hostname="localhost", https_port=1, http_port=2, server_port=3, tls="internal")
    return PrivateIndex.objects.create(
        name="placed", team=team, requested_by=lead, state="ready", deployment=placement.as_dict()
    )


class Flaky:
    """A step body that raises `errors` one after the other, then succeeds; `calls` counts."""

    def __init__(self, *errors: Exception, during=None) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.during = during

    def __call__(self) -> None:
        self.calls += 1
        if self.during is not None and self.calls > 1:
            self.during()
        if self.errors:
            raise self.errors.pop(0)


def test_retry_delays_double_from_the_backoff_up_to_its_cap(settings):
    settings.STEP_RETRY_BACKOFF_SECONDS, settings.STEP_RETRY_BACKOFF_MAX_SECONDS = 2.0, 8.0
    assert [operations.retry_delay(attempt) for attempt in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 8.0]


def test_a_transient_error_is_retried_in_the_same_job_and_the_page_shows_the_retry_until_the_step_succeeds(
    placed_index, lead_client, settings
):
    settings.STEP_RETRY_ATTEMPTS = 3
    seen: list[str] = []

    def read_the_page() -> None:
        seen.append(lead_client.get(placed_index.get_absolute_url()).content.decode())

    flaky = Flaky(DriverError("Azure did not answer"), during=read_the_page)

    operations.steps_run(placed_index, "restart", [DeployStep("restart", "Restart it", flaky)], resume=False)

    step = placed_index.steps.get(name="restart")
    assert flaky.calls == 2
    assert (step.state, step.attempts, step.error) == (ProvisioningStep.State.DONE, 2, "")
    delay = f"{operations.retry_delay(1):g}"
    assert f"Attempt 1 of 3 failed: Azure did not answer; retrying in {delay} s." in seen[0]
    assert 'class="step-retry"' in seen[0] and "(2 attempts)" in seen[0]


def test_a_permanent_error_fails_the_step_at_once_with_its_message_after_one_attempt(placed_index, settings):
    settings.STEP_RETRY_ATTEMPTS = 3
    flaky = Flaky(DriverError("The storage account name is taken.", permanent=True))

    with pytest.raises(operations.StepFailed) as failure:
        operations.steps_run(placed_index, "restart", [DeployStep("restart", "Restart it", flaky)], resume=False)

    step = placed_index.steps.get(name="restart")
    assert flaky.calls == 1
    assert (step.state, step.attempts) == (ProvisioningStep.State.FAILED, 1)
    assert step.error == failure.value.message == "The storage account name is taken."


def test_a_transient_error_that_persists_fails_the_step_after_every_attempt_with_the_drivers_own_message(
    placed_index, settings
):
    settings.STEP_RETRY_ATTEMPTS = 3
    flaky = Flaky(*[DriverError("The index did not answer") for _ in range(3)])

    with pytest.raises(operations.StepFailed):
        operations.steps_run(placed_index, "restart", [DeployStep("restart", "Restart it", flaky)], resume=False)

    step = placed_index.steps.get(name="restart")
    assert flaky.calls == 3
    assert (step.state, step.attempts, step.error) == (ProvisioningStep.State.FAILED, 3, "The index did not answer")


def test_an_unexpected_exception_fails_the_step_at_once_naming_it(placed_index):
    flaky = Flaky(KeyError("resources"))

    with pytest.raises(operations.StepFailed):
        operations.steps_run(placed_index, "restart", [DeployStep("restart", "Restart it", flaky)], resume=False)

    step = placed_index.steps.get(name="restart")
    assert flaky.calls == 1 and step.attempts == 1
    assert step.error == "Unexpected error: KeyError: 'resources'"


def test_a_restart_goes_through_the_runner_retrying_a_transient_error_and_ends_ready(
    placed_index, lead, monkeypatch, settings
):
    settings.STEP_RETRY_ATTEMPTS = 3
    flaky = Flaky(DriverError("Caddy is not up yet"))
    monkeypatch.setattr(type(get_runtime()), "restart", lambda self, spec: flaky())
    services.index_restart(index=placed_index, actor=lead)

    services.index_restart_perform(placed_index.pk)

    placed_index.refresh_from_db()
    assert placed_index.state == "ready" and flaky.calls == 2
    assert placed_index.steps.get(operation="restart").attempts == 2


def test_a_restart_failing_permanently_fails_the_index_at_once_halts_it_and_audits_it(
    placed_index, lead, monkeypatch, settings
):
    settings.STEP_RETRY_ATTEMPTS = 3
    flaky = Flaky(DriverError("Quota exceeded for container groups.", permanent=True))
    halted: list[int] = []
    monkeypatch.setattr(type(get_runtime()), "restart", lambda self, spec: flaky())
    monkeypatch.setattr(type(get_runtime()), "halt", lambda self, spec: halted.append(spec.index_id))
    services.index_restart(index=placed_index, actor=lead)

    services.index_restart_perform(placed_index.pk)

    placed_index.refresh_from_db()
    assert (placed_index.state, placed_index.failed_operation, placed_index.failed_step) == (
        "failed", "restart", "restart",
    )  # fmt: skip
    assert placed_index.error == "Quota exceeded for container groups." and flaky.calls == 1
    assert halted == [placed_index.pk]
    assert AuditEvent.objects.filter(action="index.restart_failed").count() == 1


def test_a_refresh_retries_a_transient_manifest_write_under_the_index_lock_and_the_index_stays_ready(
    placed_index, monkeypatch, settings
):
    settings.STEP_RETRY_ATTEMPTS = 3
    locked: list[bool] = []
    flaky = Flaky(DriverError("the config share is busy"))

    def write_if_changed(self, spec, share, path, data):
        locked.append(bool(operations.operations_redis().exists(f"lock:index:{spec.index_id}")))
        flaky()
        return True

    monkeypatch.setattr(type(get_store()), "write_if_changed", write_if_changed)
    django_rq.get_connection("packages").set(package_services._pending_key(placed_index.pk), "1")

    package_services.packages_refresh_perform(placed_index.pk)

    placed_index.refresh_from_db()
    assert placed_index.state == "ready" and flaky.calls == 2 and locked == [True, True]
    assert AuditEvent.objects.filter(action="packages.refreshed").count() == 1
    assert not AuditEvent.objects.filter(action="packages.refresh_failed").exists()
