"""Periodic jobs, run by exactly one scheduler process:

    python manage.py scheduler provisioning.cron

(RQ's CronScheduler via django-rq, started again after a Redis outage: portal/workers.py).
It only enqueues; the workers run the jobs.
Two schedulers would enqueue every job twice, so docker-compose.yml starts one `cron` service.
"""

from __future__ import annotations

from django.conf import settings
from rq import cron

from packages_ui import jobs as package_jobs
from packages_ui import services as package_services
from provisioning import check_jobs, checks, jobs

cron.register(
    check_jobs.check_fleet,
    queue_name=checks.QUEUE,
    cron=settings.CERT_CHECK_CRON,
    job_timeout=check_jobs.fleet_job_timeout(),
    result_ttl=86400,
    name="certificate-fleet-check",
)

# The database is the source of truth: indexes stuck in a working state with no live job (or one
# whose worker died) get it back, and ready indexes whose processes or containers are gone are
# brought back up. Every few seconds, so a killed worker costs about a minute.
cron.register(
    jobs.reconcile_indexes,
    queue_name="provisioning",
    interval=settings.RECONCILE_INTERVAL_SECONDS,
    job_timeout=600,
    result_ttl=3600,
    name="reconcile-indexes",
)

# Every file an index serves must be what was published: the share is compared with the records.
cron.register(
    package_jobs.check_fleet_integrity,
    queue_name=package_services.QUEUE,
    cron=settings.PACKAGES_INTEGRITY_CRON,
    job_timeout=600,
    result_ttl=3600,
    name="package-integrity-check",
)
