"""Periodic jobs, run by exactly one scheduler process:

    python manage.py rqcron provisioning.cron

(RQ's CronScheduler via django-rq). It only enqueues; the `default` queue's workers run the jobs.
Two schedulers would enqueue every job twice, so docker-compose.yml starts one `cron` service.
"""

from __future__ import annotations

from django.conf import settings
from rq import cron

from provisioning import check_jobs

cron.register(
    check_jobs.check_fleet,
    queue_name="default",
    cron=settings.CERT_CHECK_CRON,
    job_timeout=check_jobs._fleet_timeout(),
    result_ttl=86400,
    name="certificate-fleet-check",
)
