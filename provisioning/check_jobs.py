"""RQ jobs for certificate and health checks: load by id, call one service."""

from __future__ import annotations

from django.conf import settings
from django_rq import job

from provisioning import checks
from provisioning.models import PrivateIndex

CHECK_JOB_TIMEOUT = 120


def fleet_job_timeout() -> int:
    # Generous: every round of concurrent checks may take the whole per-host budget.
    return int(600 + settings.CERT_CHECK_TIMEOUT_SECONDS * 100)


@job(checks.QUEUE, timeout=CHECK_JOB_TIMEOUT)
def check_index(index_id: int) -> None:
    index = PrivateIndex.objects.select_related("team").filter(pk=index_id).first()
    if index is not None:  # deleted since the check was queued: nothing to do
        checks.index_check(index=index)


@job(checks.QUEUE, timeout=fleet_job_timeout())
def check_fleet() -> dict[str, int]:
    return checks.fleet_check()
