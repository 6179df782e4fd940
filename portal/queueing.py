"""Enqueueing RQ jobs once the current transaction commits: the one way every app does it.

Also the one answer to "is this job still being worked on?": a job RQ marks started only
counts while its worker keeps heartbeating. A worker killed with SIGKILL (with its work-horse)
leaves its job "started" until RQ's own housekeeping notices, minutes later; here it is seen
as lost after HEARTBEAT_MISSED_AFTER_SECONDS.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import django_rq
from django.db import transaction
from rq.job import Job, JobStatus
from rq.worker import Worker

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


def enqueue_after_commit(queue_name: str, func: Callable, *args: object, job_id: str, **job_kwargs: object) -> None:
    """Enqueue `func(*args)` as `job_id` when the transaction commits, unless a job with that id is
    still live; a finished or failed one, or one whose worker died, is cleared so the id can be
    used again."""

    def enqueue() -> None:
        queue = queue_now(queue_name)
        existing = queue.fetch_job(job_id)
        if existing is not None:
            if job_is_live(existing):
                return
            if job_lost_its_worker(existing):
                logger.warning(
                    "Job %s lost its worker %s (last heartbeat %.0f s ago); queueing it again.",
                    job_id, existing.worker_name, seconds_since_heartbeat(existing) or 0,
                )  # fmt: skip
            job_discard(existing)
        queue.enqueue(func, *args, job_id=job_id, **job_kwargs)

    transaction.on_commit(enqueue)
