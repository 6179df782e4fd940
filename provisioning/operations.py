"""The index operation runner: every provision, restart and teardown runs through `operation_run`,
and the package refresh through the same lock and retry policy.

- `index_lock`: one worker per index at a time (a Redis lock renewed by a heartbeat).
- `driver_retrying`: the one retry policy for driver calls. A transient DriverError is tried again
  in the same job, STEP_RETRY_ATTEMPTS times in all, with exponential backoff; a permanent one
  (or any other exception) is not.
- `steps_run`: an operation's steps in order, each recorded in ProvisioningStep (state, attempts,
  the error, or the retry being waited for) so the page shows progress and a retry resumes.
- `operation_run`: lock, load, plan, steps; a failed step fails the index (FAILED, halt, audit).
- `operation_enqueue`, `has_live_job`, `index_resume_notice`, `index_reconcile`: the operation's job,
  and the lost work a dead worker left (queued again, said on the page).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import django_rq
from django.conf import settings
from django.utils import timezone
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.exceptions import NoSuchJobError
from rq.job import Job

from portal.audit import audit_record
from portal.job_table import JOBS
from portal.queueing import job_enqueue, job_id_of, job_is_live, job_lost_its_worker, job_timeout
from provisioning.checks import index_check_enqueue
from provisioning.drivers.backend import get_runtime
from provisioning.drivers.base import DriverError
from provisioning.drivers.runtime import DeployStep
from provisioning.models import (
    OPERATION_OF_ACTIVE_STATE,
    WORKING_STATE,
    IndexOperation,
    IndexState,
    PrivateIndex,
    ProvisioningStep,
    index_spec,
)
from provisioning.pause import pause_point

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The job that runs each operation (its queue, timeout and id: portal/job_table.py).
OPERATION_JOBS = {
    IndexOperation.PROVISION: "provisioning.jobs.provision_index",
    IndexOperation.RESTART: "provisioning.jobs.restart_index",
    IndexOperation.TEARDOWN: "provisioning.jobs.teardown_index",
}
RESUMING_NOTICE = "Resuming after a worker stopped"


def operations_redis() -> Redis:
    """The Redis of the operations' queue: their jobs, the index locks, the resume notices."""
    return django_rq.get_connection(JOBS[OPERATION_JOBS[IndexOperation.PROVISION]].queue)


def _longest_operation_seconds() -> int:
    return max(job_timeout(JOBS[path]) for path in OPERATION_JOBS.values())


class StepFailed(Exception):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step
        self.message = message


# --- the lock


def _notice_key(index_id: int) -> str:
    return f"index:{index_id}:resuming"


@contextlib.contextmanager
def index_lock(index_id: int) -> Iterator[None]:
    """One worker per index at a time; a second job for the same index waits its turn.

    The lock lives INDEX_LOCK_TTL_SECONDS and a heartbeat renews it while the job runs, so a
    worker killed with SIGKILL frees the index within that time instead of a whole job timeout.
    """
    ttl = settings.INDEX_LOCK_TTL_SECONDS
    wait = _longest_operation_seconds()
    lock = operations_redis().lock(f"lock:index:{index_id}", timeout=ttl, blocking_timeout=wait, thread_local=False)
    if not lock.acquire():
        raise RuntimeError(f"Index {index_id} stayed locked for {wait} s.")
    connection = lock.redis
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(ttl / 3):
            with contextlib.suppress(Exception):  # a lost renewal shows up as a lost lock later
                lock.reacquire()

    beat = threading.Thread(target=heartbeat, name=f"lock-heartbeat-{index_id}", daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()
        with contextlib.suppress(Exception):
            connection.delete(_notice_key(index_id))  # the work ran: no longer "resuming"
        with contextlib.suppress(Exception):
            lock.release()


# --- retries
# Microsoft's guidance for cloud calls: retry transient faults (a busy or briefly unavailable
# service, a timeout, throttling) after growing delays, and never retry what cannot succeed
# (https://learn.microsoft.com/en-us/azure/well-architected/reliability/handle-transient-faults).
# The drivers say which is which (DriverError.permanent; Azure: drivers/azure_clients.to_driver_error).


def retry_delay(attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (1, 2, ...): doubling, capped."""
    return min(settings.STEP_RETRY_BACKOFF_MAX_SECONDS, settings.STEP_RETRY_BACKOFF_SECONDS * 2 ** (attempt - 1))


def driver_retrying(
    call: Callable[[], T],
    *,
    before_attempt: Callable[[int], None] | None = None,
    after_failure: Callable[[str], None] | None = None,
) -> T:
    """`call()`, tried again after a transient DriverError, STEP_RETRY_ATTEMPTS times in all with
    exponential backoff. A permanent DriverError, the last attempt's error and every other
    exception are raised at once. `before_attempt(n)` runs before each attempt; `after_failure`
    gets "Attempt n of N failed: <message>; retrying in s s." before each wait."""
    attempts = max(1, settings.STEP_RETRY_ATTEMPTS)
    attempt = 1
    while True:
        if before_attempt is not None:
            before_attempt(attempt)
        try:
            return call()
        except DriverError as exc:
            if exc.permanent or attempt >= attempts:
                raise
            delay = retry_delay(attempt)
            note = f"Attempt {attempt} of {attempts} failed: {exc.message}; retrying in {delay:g} s."
            logger.warning("%s", note)
            if after_failure is not None:
                after_failure(note)
            time.sleep(delay)
            attempt += 1


# --- steps


def _step_run(index: PrivateIndex, operation: str, row: ProvisioningStep, step: DeployStep) -> None:
    """Run one step with the retry policy, recording each attempt on its row. Raises StepFailed."""

    def attempt_starts(attempt: int) -> None:
        row.state, row.finished_at = ProvisioningStep.State.RUNNING, None
        if attempt == 1:
            row.started_at, row.error = timezone.now(), ""
        row.attempts += 1
        row.save()
        if attempt == 1:
            pause_point(f"{index.pk}-{operation}-{step.name}")

    def attempt_failed(note: str) -> None:
        row.error = note  # the page shows the retry being waited for
        row.save(update_fields=["error"])

    try:
        driver_retrying(step.run, before_attempt=attempt_starts, after_failure=attempt_failed)
    except DriverError as exc:
        message = exc.message
    except Exception as exc:
        logger.exception("Step %s of %s for index %s crashed", step.name, operation, index.pk)
        message = f"Unexpected error: {exc.__class__.__name__}: {exc}"
    else:
        row.state, row.finished_at, row.error = ProvisioningStep.State.DONE, timezone.now(), ""
        row.save(update_fields=["state", "finished_at", "error"])
        return
    row.state, row.finished_at, row.error = ProvisioningStep.State.FAILED, timezone.now(), message
    row.save(update_fields=["state", "finished_at", "error"])
    raise StepFailed(step.name, message)


def steps_run(index: PrivateIndex, operation: str, steps: list[DeployStep], *, resume: bool) -> None:
    """Run `steps` in order, recording each. With `resume`, steps already done are skipped
    (except those marked `rerun`). Raises StepFailed for the first step that fails."""
    rows = {row.name: row for row in index.steps.filter(operation=operation)}
    if not resume or set(rows) - {s.name for s in steps}:
        index.steps.filter(operation=operation).delete()
        rows = {}
    for position, step in enumerate(steps):
        if step.name not in rows:
            rows[step.name] = ProvisioningStep.objects.create(
                index=index, operation=operation, position=position, name=step.name, label=step.label
            )
    for step in steps:
        row = rows[step.name]
        if row.state == ProvisioningStep.State.DONE and not step.rerun:
            continue
        _step_run(index, operation, row, step)


# --- operations


@dataclass
class Plan:
    """The steps of one run of an operation, and what to keep after them, done or failed."""

    steps: list[DeployStep] = field(default_factory=list)
    settle: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class OperationSpec:
    """What an operation does; `operation_run` does the rest (lock, steps, failure)."""

    name: IndexOperation
    # The steps for the loaded index; raises StepFailed when they cannot even be planned.
    plan: Callable[[PrivateIndex], Plan]
    # Once every step is done: the state the index ends in, the audit.
    finish: Callable[[PrivateIndex], None]
    # A retry, or a job resumed after its worker died, skips the steps already done.
    resumes: bool = True

    @property
    def state(self) -> str:
        """The index's state while the operation runs."""
        return WORKING_STATE[self.name]

    @property
    def starts_from(self) -> frozenset[str]:
        """Other active states whose job is this operation: they move to `state` when it starts
        (a request starts provisioning)."""
        return frozenset(s for s, op in OPERATION_OF_ACTIVE_STATE.items() if op == self.name) - {self.state}


def _interrupted(index: PrivateIndex, operation: str) -> bool:
    """A step of `operation` was running when its worker died: resume from it."""
    return index.steps.filter(operation=operation, state=ProvisioningStep.State.RUNNING).exists()


def index_fail(index: PrivateIndex, operation: str, failure: StepFailed) -> None:
    """The index is FAILED at `failure`'s step, with its message, and nothing of it keeps running
    unattended (its data stays for the retry); audited."""
    if operation != IndexOperation.TEARDOWN and index.deployment:
        try:
            get_runtime().halt(index_spec(index))
        except DriverError as exc:
            logger.warning("Could not halt index %s after failure: %s", index.pk, exc)
    index.transition_to(IndexState.FAILED, failed_operation=operation, failed_step=failure.step, error=failure.message)
    audit_record(
        action=f"index.{operation}_failed", obj=index, details={"step": failure.step, "error": failure.message}
    )


def operation_run(index_id: int, operation: OperationSpec) -> None:
    """Run `operation` on the index under its lock: its steps, resumed where the last run stopped
    when it resumes; the first failed step fails the index. Nothing happens unless the index is
    in the operation's state (a job queued twice, or for an index that moved on)."""
    with index_lock(index_id):
        index = PrivateIndex.objects.select_related("team").get(pk=index_id)
        if index.state in operation.starts_from:
            index.transition_to(operation.state)
        if index.state != operation.state:
            logger.info("Index %s is %s; no %s.", index_id, index.state, operation.name)
            return
        resume = operation.resumes and (index.failed_operation == operation.name or _interrupted(index, operation.name))
        try:
            plan = operation.plan(index)
            try:
                steps_run(index, operation.name, plan.steps, resume=resume)
            finally:
                plan.settle()
        except StepFailed as failure:
            index_fail(index, operation.name, failure)
            return
        operation.finish(index)


# --- jobs and lost work


def operation_enqueue(index: PrivateIndex, operation: str) -> None:
    """Queue the job for `operation` once the current transaction commits (one per index and
    operation: a double submit cannot queue the same work twice)."""
    job_enqueue(OPERATION_JOBS[operation], index.pk)


def _index_jobs(index: PrivateIndex) -> Iterator[Job]:
    connection = operations_redis()
    for path in OPERATION_JOBS.values():
        try:
            yield Job.fetch(job_id_of(path, index.pk), connection=connection)
        except NoSuchJobError:
            continue


def has_live_job(index: PrivateIndex) -> bool:
    """A job is queued for the index, or running on a worker that still heartbeats."""
    return any(job_is_live(job) for job in _index_jobs(index))


def index_resume_notice(index: PrivateIndex) -> str:
    """What the index page says while an index waits for its work to resume after its worker
    died (killed, out of memory, redeployed), instead of spinning silently; "" otherwise."""
    if not index.is_active:
        return ""
    try:
        notice = operations_redis().get(_notice_key(index.pk))
        if notice:
            return notice.decode()
        if any(job_lost_its_worker(job) for job in _index_jobs(index)):
            return f"{RESUMING_NOTICE}: its work continues within a minute."
    except (RedisConnectionError, RedisTimeoutError):
        return "The portal cannot reach Redis: work on this index continues once it is back."
    return ""


def index_reconcile() -> dict[str, int]:
    """Make the database true again after a crash or a restart of this machine.

    Indexes stuck in an active state with no live job get their job again; ready indexes whose
    processes or containers are gone are brought back. Returns counts for the caller to report.
    """
    counts = {"requeued": 0, "revived": 0, "errors": 0}
    connection = operations_redis()
    for index in PrivateIndex.objects.active().select_related("team"):
        jobs = list(_index_jobs(index))
        if any(job_is_live(job) for job in jobs):
            continue
        # A step left running means its worker died mid-way (silent, or already failed by RQ as
        # abandoned or as a lost work-horse): say so on the page until the work resumes.
        running = index.steps.filter(state=ProvisioningStep.State.RUNNING).values_list("label", flat=True).first()
        if running or any(job_lost_its_worker(job) for job in jobs):
            notice = f"{RESUMING_NOTICE}" + (f", from “{running}”." if running else ".")
            connection.set(_notice_key(index.pk), notice, ex=_longest_operation_seconds())
            logger.warning("Index %s lost its worker; queueing its %s again.", index.name, index.state)
        operation_enqueue(index, OPERATION_OF_ACTIVE_STATE[index.state])
        counts["requeued"] += 1
    # A ready index whose processes died is brought back, and checked at once so the dashboard
    # shows the revival (or the death, when it cannot come back) now, not at the next fleet check.
    runtime = get_runtime()
    for index in PrivateIndex.objects.filter(state=IndexState.READY).select_related("team"):
        try:
            if runtime.ensure_running(index_spec(index)):
                counts["revived"] += 1
                audit_record(action="index.revived", obj=index)
                index_check_enqueue(index=index)
        except DriverError as exc:
            counts["errors"] += 1
            logger.warning("Could not bring index %s back: %s", index.name, exc)
            index_check_enqueue(index=index)
    return counts
