"""RQ jobs for certificate and health checks: load by id, call one service.
Their queues and timeouts: portal/job_table.py."""

from __future__ import annotations

from provisioning import checks
from provisioning.models import PrivateIndex


def check_index(index_id: int) -> None:
    index = PrivateIndex.objects.select_related("team").filter(pk=index_id).first()
    if index is not None:  # deleted since the check was queued: nothing to do
        checks.index_check(index=index)


def check_fleet() -> dict[str, int]:
    return checks.fleet_check()
