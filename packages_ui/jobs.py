"""RQ jobs of the package page: each takes an id and calls one service. Enqueued by dotted path
from packages_ui.services; their queues and timeouts: portal/job_table.py."""

from __future__ import annotations

from packages_ui import services
from provisioning.models import PrivateIndex


def refresh_packages(index_id: int) -> None:
    services.packages_refresh_perform(index_id)


def mirror_packages(run_id: int) -> None:
    services.mirror_perform(run_id)


def check_package_integrity(index_id: int) -> None:
    services.packages_integrity_check(index=PrivateIndex.objects.select_related("team").get(pk=index_id))


def check_fleet_integrity() -> None:
    """Queue an integrity check for every index that serves packages (run by the scheduler)."""
    for index in PrivateIndex.objects.serving():
        services.integrity_check_enqueue(index=index)
