"""Enqueueing RQ jobs once the current transaction commits: the one way every app does it."""

from __future__ import annotations

from collections.abc import Callable

import django_rq
from django.db import transaction
from rq.job import JobStatus

# States in which a job with a given id still stands for work to be done.
LIVE_JOB_STATES = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def queue_now(name: str) -> django_rq.queues.DjangoRQ:
    """The queue, enqueueing at once. For code that already runs after the commit: django-rq's
    on_db_commit mode would otherwise defer a second time, and a double click could slip in."""
    return django_rq.get_queue(name, commit_mode="auto")


def enqueue_after_commit(queue_name: str, func: Callable, *args: object, job_id: str, **job_kwargs: object) -> None:
    """Enqueue `func(*args)` as `job_id` when the transaction commits, unless a job with that id is
    still queued or running; a finished or failed one is cleared so the id can be used again."""

    def enqueue() -> None:
        queue = queue_now(queue_name)
        existing = queue.fetch_job(job_id)
        if existing is not None:
            if existing.get_status(refresh=True) in LIVE_JOB_STATES:
                return
            existing.delete()
        queue.enqueue(func, *args, job_id=job_id, **job_kwargs)

    transaction.on_commit(enqueue)
