"""Periodic jobs, run by exactly one scheduler process:

    python manage.py scheduler provisioning.cron

(RQ's CronScheduler via django-rq, started again after a Redis outage: portal/workers.py).
It only enqueues, with the queues, timeouts and TTLs of portal/job_table.py; the workers run the jobs.
Two schedulers would enqueue every job twice, so docker-compose.yml starts one `cron` service.
"""

from __future__ import annotations

from django.conf import settings

from portal.queueing import job_schedule

job_schedule("provisioning.check_jobs.check_fleet", cron_line=settings.CERT_CHECK_CRON, name="certificate-fleet-check")

# The database is the source of truth: indexes stuck in a working state with no live job (or one
# whose worker died) get it back, and ready indexes whose processes or containers are gone are
# brought back up. Every few seconds, so a killed worker costs about a minute.
job_schedule(
    "provisioning.jobs.reconcile_indexes", interval=settings.RECONCILE_INTERVAL_SECONDS, name="reconcile-indexes"
)

# Every file an index serves must be what was published: the share is compared with the records.
job_schedule(
    "packages_ui.jobs.check_fleet_integrity", cron_line=settings.PACKAGES_INTEGRITY_CRON, name="package-integrity-check"
)
