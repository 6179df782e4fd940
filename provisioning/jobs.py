"""RQ jobs: each takes an id, loads nothing itself beyond that, and calls one service."""

from __future__ import annotations

from django_rq import job

from provisioning import services


@job("provisioning", timeout=services.JOB_TIMEOUT)
def provision_index(index_id: int) -> None:
    services.index_provision_perform(index_id)


@job("provisioning", timeout=services.JOB_TIMEOUT)
def restart_index(index_id: int) -> None:
    services.index_restart_perform(index_id)


@job("provisioning", timeout=services.JOB_TIMEOUT)
def teardown_index(index_id: int) -> None:
    services.index_teardown_perform(index_id)


@job("provisioning", timeout=services.JOB_TIMEOUT)
def reconcile_indexes() -> dict[str, int]:
    return services.index_reconcile()
