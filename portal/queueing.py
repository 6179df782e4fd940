"""Enqueueing RQ jobs: the one way every app does it, from the one table of jobs
(portal/job_table.py) that says each job's queue, timeout, result and failure TTLs and job id.
`job_enqueue` enqueues once the current transaction commits, `job_enqueue_now` from code that
already runs after it, and `job_schedule` registers a job with the scheduler (provisioning/cron.py).

Also the one answer to "is this job still being worked on?": a job RQ marks started only
counts while its worker keeps heartbeating. A worker killed with SIGKILL (with its work-horse)
leaves its job "started" until RQ's own housekeeping notices, minutes later; here it is seen
as lost after HEARTBEAT_MISSED_AFTER_SECONDS.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import django_rq
from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string
from rq import cron
from rq.job import Job, JobStatus
from rq.worker import Worker

from portal.job_table import JOBS, JobKind

logger = logging.getLogger(__name__)

# States in which a job with a given id still stands for work to be done.
LIVE_JOB_STATES = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
# How often a busy worker heartbeats its job (portal.worker.PortalWorker's job monitoring
# interval; RQ's default is 30 s). Three missed beats mean the worker is gone.
WORKER_HEARTBEAT_SECONDS = 10
HEARTBEAT_MISSED_AFTER_SECONDS = 3 * WORKER_HEARTBEAT_SECONDS


def queue_now(name: str) -> django_rq.queues.DjangoRQ:
    """The queue, enqueueing at once. For code that already runs after the commit: django-rq's
    on_db_commit mode would otherwise defer a second time, and a double click could slip in."""
    return django_rq.get_queue(name, commit_mode="auto")


def seconds_since_heartbeat(job: Job) -> float | None:
    """Seconds since the job's worker last heartbeated it (None before it started)."""
    last = job.last_heartbeat or job.started_at
    if last is None:
        return None
    return (datetime.now(UTC) - last.replace(tzinfo=last.tzinfo or UTC)).total_seconds()


def job_lost_its_worker(job: Job) -> bool:
    """True for a started job whose worker stopped heartbeating or no longer exists."""
    if job.get_status(refresh=False) != JobStatus.STARTED:
        return False
    silent = seconds_since_heartbeat(job)
    if silent is not None and silent > HEARTBEAT_MISSED_AFTER_SECONDS:
        return True
    if job.worker_name:
        return not job.connection.exists(Worker.redis_worker_namespace_prefix + job.worker_name)
    return False


def job_is_live(job: Job) -> bool:
    """Queued, scheduled, deferred, or started by a worker that is still alive."""
    job.refresh()
    return job.get_status(refresh=False) in LIVE_JOB_STATES and not job_lost_its_worker(job)


def job_discard(job: Job) -> None:
    """Forget a job (and a lost worker's started-registry entry, which RQ's cleanup would
    otherwise later mark failed under the same id as a new, running job)."""
    if job.get_status(refresh=False) == JobStatus.STARTED:
        job.started_job_registry.remove_executions(job)
    job.delete()


def job_timeout(kind: JobKind) -> int:
    """The kind's timeout in seconds (read from its setting when the table names one)."""
    return int(getattr(settings, kind.timeout) if isinstance(kind.timeout, str) else kind.timeout)


def job_id_of(path: str, *args: object) -> str | None:
    """The id a job `path` called with `args` gets, or None for a job without one."""
    pattern = JOBS[path].job_id
    return pattern.format(*args) if pattern else None


def job_enqueue_now(path: str, *args: object) -> Job | None:
    """Enqueue the job `path` (a key of JOBS) with `args` at once, as the table says, unless a job
    with its id is still live (then None); a finished or failed one, or one whose worker died, is
    cleared so the id can be used again."""
    kind = JOBS[path]
    queue = queue_now(kind.queue)
    job_id = job_id_of(path, *args)
    existing = queue.fetch_job(job_id) if job_id else None
    if existing is not None:
        if job_is_live(existing):
            return None
        if job_lost_its_worker(existing):
            logger.warning(
                "Job %s lost its worker %s (last heartbeat %.0f s ago); queueing it again.",
                job_id, existing.worker_name, seconds_since_heartbeat(existing) or 0,
            )  # fmt: skip
        job_discard(existing)
    return queue.enqueue_call(
        path, args=args, job_id=job_id, timeout=job_timeout(kind),
        result_ttl=kind.result_ttl, failure_ttl=kind.failure_ttl,
    )  # fmt: skip


def job_enqueue(path: str, *args: object) -> None:
    """Enqueue the job `path` with `args` once the current transaction commits (at once outside
    one), as `job_enqueue_now` does."""
    if path not in JOBS:  # fail in the caller, not after the commit
        raise KeyError(f"{path} is not in portal.job_table.JOBS.")
    transaction.on_commit(lambda: job_enqueue_now(path, *args))


def job_schedule(path: str, *, name: str, cron_line: str | None = None, interval: int | None = None) -> None:
    """Register the job `path` with the scheduler (in a config module such as provisioning.cron):
    on `cron_line` (cron syntax) or every `interval` seconds, with the table's queue and TTLs."""
    kind = JOBS[path]
    cron.register(
        import_string(path), queue_name=kind.queue, cron=cron_line, interval=interval,
        job_timeout=job_timeout(kind), result_ttl=kind.result_ttl, failure_ttl=kind.failure_ttl, name=name,
    )  # fmt: skip
