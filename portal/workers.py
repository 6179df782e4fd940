"""RQ's worker and cron scheduler, made to ride out a Redis restart or hang.

Stock RQ quits: a worker on a Redis timeout or any error outside a job (a heartbeat while Redis
restarts), the cron scheduler on any error at all. Both are started again here, in the same
process, once Redis answers. The worker also heartbeats its job every WORKER_HEARTBEAT_SECONDS
(RQ: 30 s), so a killed worker is noticed within seconds (portal.queueing.job_lost_its_worker).

`manage.py rqworker` uses PortalWorker through settings.RQ["WORKER_CLASS"];
`manage.py scheduler provisioning.cron` runs PortalCronScheduler.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

import redis
from django_rq.cron import DjangoCronScheduler
from rq.exceptions import StopRequested
from rq.worker import Worker

from portal.queueing import WORKER_HEARTBEAT_SECONDS

logger = logging.getLogger(__name__)

REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
MAX_BACKOFF_SECONDS = 30.0


def _wait_for_redis(connection: redis.Redis, delay: float, *, stopping: Callable[[], bool]) -> None:
    """Sleep `delay`, then until Redis answers a PING (one line per attempt, no traceback)."""
    while not stopping():
        time.sleep(delay)
        try:
            connection.ping()
            return
        except REDIS_ERRORS as exc:
            logger.warning("Redis is not answering (%s); trying again in %.0f s.", exc, delay)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)


class PortalWorker(Worker):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("job_monitoring_interval", WORKER_HEARTBEAT_SECONDS)
        super().__init__(*args, **kwargs)

    def maintain_heartbeats(self, job, execution) -> None:
        # A heartbeat lost to a Redis restart must not stop the worker watching its work-horse.
        try:
            super().maintain_heartbeats(job, execution)
        except REDIS_ERRORS as exc:
            self.log.warning("Worker %s: heartbeat for job %s failed (%s); still watching.", self.name, job.id, exc)

    def work(self, burst: bool = False, **kwargs) -> bool:
        """RQ's work loop, entered again after it quit on a Redis error (until asked to stop)."""
        worked = False
        while True:
            try:
                worked = super().work(burst=burst, **kwargs) or worked
                error: Exception | None = None
            except REDIS_ERRORS as exc:
                error = exc
            finished = burst or kwargs.get("max_jobs") or kwargs.get("max_idle_time")
            if finished or self._shutdown_requested_date is not None or self._stop_requested:
                return worked
            self.log.warning("Worker %s stopped working (%s); starting again once Redis answers.", self.name, error)
            try:
                _wait_for_redis(self.connection, 1.0, stopping=lambda: self._shutdown_requested_date is not None)
            except StopRequested:
                return worked
            # A fresh identity: the old worker key may still be there, and RQ refuses a live name.
            self.name = uuid.uuid4().hex
            self._stop_requested = False


class PortalCronScheduler(DjangoCronScheduler):
    _stopping = False

    def _request_stop(self, signum, frame):
        self._stopping = True
        super()._request_stop(signum, frame)

    def start(self) -> None:
        """RQ's scheduler loop, started again after a Redis error instead of exiting."""
        while True:
            try:
                super().start()
                return  # stopped by a signal
            except REDIS_ERRORS as exc:
                logger.warning("Scheduler %s: Redis failed (%s); starting again once it answers.", self.name, exc)
            try:
                _wait_for_redis(self.connection, 1.0, stopping=lambda: self._stopping)
            except StopRequested:
                return
            if self._stopping:
                return
