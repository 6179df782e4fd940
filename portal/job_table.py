"""Every RQ job of the project, declared once: its function (by dotted path), its queue, how long
it may run, how long its result and its failure are kept, and its job id.

`portal/queueing.py` enqueues from this table and nothing else does (`job_enqueue`, and
`job_schedule` for the scheduler's `provisioning/cron.py`); `portal/settings.py` builds RQ_QUEUES
from QUEUES. Jobs are named by dotted path, so a service never imports a jobs module (the jobs
modules import the services they call).

No Django import here: the settings module imports this one.
"""

from __future__ import annotations

from dataclasses import dataclass

DAY = 86400

# Every queue, with the timeout of a job enqueued without one (none here: RQ's own screens).
QUEUES: dict[str, int] = {"provisioning": 1800, "packages": 3600, "default": 600}


@dataclass(frozen=True)
class JobKind:
    queue: str
    # Seconds, or the name of the setting that holds them.
    timeout: int | str
    result_ttl: int = 0
    failure_ttl: int = 7 * DAY
    # "index-{}-provision": formatted with the job's arguments; at most one live job per id
    # (a double submit queues nothing twice). "" for jobs that need no id.
    job_id: str = ""


JOBS: dict[str, JobKind] = {
    # Building, restarting and tearing down an index (provisioning/services.py, through the runner).
    "provisioning.jobs.provision_index": JobKind("provisioning", 1800, job_id="index-{}-provision"),
    "provisioning.jobs.restart_index": JobKind("provisioning", 1800, job_id="index-{}-restart"),
    "provisioning.jobs.teardown_index": JobKind("provisioning", 1800, job_id="index-{}-teardown"),
    # The scheduler's: lost work queued again, vanished indexes brought back.
    "provisioning.jobs.reconcile_indexes": JobKind("provisioning", 600, result_ttl=3600),
    # Certificate and health checks: one index, and the fleet on the scheduler's clock.
    "provisioning.check_jobs.check_index": JobKind("default", 120, failure_ttl=DAY, job_id="index-{}-check"),
    "provisioning.check_jobs.check_fleet": JobKind(
        "default", "CERT_CHECK_FLEET_JOB_TIMEOUT_SECONDS", result_ttl=DAY, failure_ttl=DAY
    ),
    # Packages: the coalesced refresh (one waiting job per index, kept so by a marker, not an id),
    # mirror runs, integrity checks.
    "packages_ui.jobs.refresh_packages": JobKind("packages", "PACKAGES_REFRESH_JOB_TIMEOUT_SECONDS"),
    "packages_ui.jobs.mirror_packages": JobKind(
        "packages", "PACKAGES_MIRROR_TIMEOUT_SECONDS", job_id="packages-mirror-{}"
    ),
    "packages_ui.jobs.check_package_integrity": JobKind(
        "packages", "PACKAGES_INTEGRITY_JOB_TIMEOUT_SECONDS", job_id="packages-integrity-{}"
    ),
    "packages_ui.jobs.check_fleet_integrity": JobKind("packages", 600, result_ttl=3600),
}
