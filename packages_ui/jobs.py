"""RQ jobs of the package page: each takes an id and calls one service."""

from __future__ import annotations

from django.conf import settings
from django_rq import job

from packages_ui import services


@job(services.QUEUE, timeout=settings.PACKAGES_RESTART_JOB_TIMEOUT_SECONDS)
def restart_packages(index_id: int) -> None:
    services.packages_restart_perform(index_id)


@job(services.QUEUE, timeout=settings.PACKAGES_MIRROR_TIMEOUT_SECONDS)
def mirror_packages(run_id: int) -> None:
    services.mirror_perform(run_id)
