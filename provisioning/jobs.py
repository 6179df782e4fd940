"""RQ jobs: each takes an id, loads nothing itself beyond that, and calls one service.
Their queues and timeouts: portal/job_table.py; they are enqueued by dotted path."""

from __future__ import annotations

from provisioning import services


def provision_index(index_id: int) -> None:
    services.index_provision_perform(index_id)


def restart_index(index_id: int) -> None:
    services.index_restart_perform(index_id)


def teardown_index(index_id: int) -> None:
    services.index_teardown_perform(index_id)


def reconcile_indexes() -> dict[str, int]:
    return services.index_reconcile()
