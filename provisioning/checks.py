"""Checking indexes: certificate, certificate files on the share, container health, share usage.

`index_check` checks one index now; `fleet_check` checks every index that has resources, with at
most CERT_CHECK_CONCURRENCY hosts at once and CERT_CHECK_TIMEOUT_SECONDS per host. Each check is
stored as a CertificateCheck (the last CERT_CHECK_HISTORY kept per index) and IndexHealth points
at the latest. Nothing a host or a driver does makes these raise: a failure is a status.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from portal.queueing import job_enqueue
from provisioning.certs import CertificateResult, CertificateTarget, inspect_fleet
from provisioning.drivers.backend import get_runtime, get_store
from provisioning.drivers.base import DriverError
from provisioning.drivers.runtime import IndexRuntime, IndexStatus, RunState
from provisioning.drivers.store import ShareFile, ShareStore
from provisioning.models import CertificateCheck, CertificateStatus, IndexHealth, PrivateIndex, index_spec
from provisioning.spec import SHARE_CERTS, SHARE_PACKAGES, IndexSpec

logger = logging.getLogger(__name__)

DISTRIBUTION_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".egg")
# Where Caddy keeps issued certificates under its data directory (the caddy-certs share).
CADDY_CERTIFICATES_PREFIX = "caddy/certificates"


@dataclass
class DriverFacts:
    status: IndexStatus
    certificate_files: list[str] | None
    packages: list[ShareFile] | None


def _driver_facts(runtime: IndexRuntime, store: ShareStore, spec: IndexSpec) -> DriverFacts:
    try:
        status = runtime.status(spec)
    except DriverError as exc:
        status = IndexStatus(state=RunState.UNKNOWN, detail=f"Status unavailable: {exc.message}")
    except Exception as exc:  # a driver bug must not stop the fleet check
        logger.exception("driver.status failed for index %s", spec.index_id)
        status = IndexStatus(state=RunState.UNKNOWN, detail=f"Status unavailable: {exc.__class__.__name__}")
    try:
        files = store.list_files(spec, SHARE_CERTS, CADDY_CERTIFICATES_PREFIX)
        cert_files = [f.path for f in files if f.path.endswith((".crt", ".key", ".json"))]
    except Exception:  # missing folder or unreachable share: unknown
        cert_files = None
    try:
        packages = [f for f in store.list_files(spec, SHARE_PACKAGES) if f.path.endswith(DISTRIBUTION_SUFFIXES)]
    except Exception:
        packages = None
    return DriverFacts(status=status, certificate_files=cert_files, packages=packages)


def _target(runtime: IndexRuntime, index: PrivateIndex) -> tuple[IndexSpec, CertificateTarget] | None:
    if not index.deployment:
        return None
    spec = index_spec(index)
    try:
        ca_pem = runtime.ca_certificate_pem(spec)
    except Exception:  # without the CA the check reports the chain as untrusted
        ca_pem = None
    target = CertificateTarget(
        key=index.pk, host=spec.hostname, port=spec.placement.https_port, server_name=spec.hostname, ca_pem=ca_pem
    )
    return spec, target


def _record(
    index: PrivateIndex, spec: IndexSpec | None, result: CertificateResult, facts: DriverFacts | None
) -> CertificateCheck:
    cert = result.certificate
    check = CertificateCheck(
        index=index,
        checked_at=timezone.now(),
        host=result.host,
        port=result.port or None,
        status=result.status,
        reason=result.reason[:2000],
        elapsed_ms=result.elapsed_ms,
        trusted=result.trusted,
        hostname_match=result.hostname_match,
    )
    if cert is not None:
        check.issuer, check.subject, check.sans = cert.issuer, cert.subject, cert.sans
        check.not_before, check.not_after, check.key_type = cert.not_before, cert.not_after, cert.key_type
        check.serial, check.sha256 = cert.serial[:64], cert.sha256
    if facts is not None:
        status = facts.status
        check.container_state = status.state
        check.containers = status.as_dict()["containers"]
        check.restart_count = sum(c.restart_count for c in status.containers)
        events = [f"{c.name}: {c.last_event}" for c in status.containers if c.last_event]
        check.last_event = (status.detail or "; ".join(events))[:2000]
        if facts.certificate_files is not None:
            check.certificate_files = facts.certificate_files
            # Caddy keeps each certificate in a folder named for its host: match the whole segment.
            check.certificates_persisted = any(
                f"/{spec.hostname}/" in f"/{path}" and path.endswith(".crt") for path in facts.certificate_files
            )
        if facts.packages is not None:
            check.package_count = len(facts.packages)
            check.storage_bytes = sum(f.size for f in facts.packages)
            check.last_upload_at = max((f.modified for f in facts.packages if f.modified), default=None)
    with transaction.atomic():
        check.save()
        IndexHealth.objects.update_or_create(
            index=index,
            defaults={"latest": check, "cert_status": check.status, "cert_not_after": check.not_after},
        )
        keep = settings.CERT_CHECK_HISTORY
        old = index.certificate_checks.order_by("-checked_at", "-id").values_list("pk", flat=True)[keep:]
        CertificateCheck.objects.filter(pk__in=list(old)).delete()
    return check


def _not_deployed(index: PrivateIndex) -> CertificateResult:
    return CertificateResult(
        host="", port=0, server_name="", status=CertificateStatus.NOT_ISSUED,
        reason="The index has no host yet.", checked_at=timezone.now(), elapsed_ms=0,
    )  # fmt: skip


def index_check(*, index: PrivateIndex) -> CertificateCheck:
    """Check one index now and store the result. Bounded by CERT_CHECK_TIMEOUT_SECONDS for the
    certificate plus the driver's own calls."""
    return _check_many([index])[index.pk]


def fleet_check() -> dict[str, int]:
    """Check every index that has resources (PrivateIndex.objects.checked()). Returns how many ended in each status."""
    indexes = list(PrivateIndex.objects.checked().select_related("team"))
    checks = _check_many(indexes)
    counts: dict[str, int] = {}
    for check in checks.values():
        counts[check.status] = counts.get(check.status, 0) + 1
    logger.info("Fleet certificate check of %d indexes: %s", len(checks), counts)
    return counts


def _check_many(indexes: list[PrivateIndex]) -> dict[int, CertificateCheck]:
    runtime, store = get_runtime(), get_store()
    specs: dict[int, IndexSpec] = {}
    targets: list[CertificateTarget] = []
    for index in indexes:
        found = _target(runtime, index)
        if found:
            specs[index.pk], target = found
            targets.append(target)
    results = inspect_fleet(
        targets,
        concurrency=settings.CERT_CHECK_CONCURRENCY,
        timeout=settings.CERT_CHECK_TIMEOUT_SECONDS,
        warning_days=settings.CERT_WARNING_DAYS,
    )
    with ThreadPoolExecutor(max_workers=max(1, min(settings.CERT_CHECK_CONCURRENCY, len(specs)))) as pool:
        facts = dict(
            zip(specs, pool.map(lambda spec: _driver_facts(runtime, store, spec), specs.values()), strict=True)
        )
    return {
        index.pk: _record(
            index, specs.get(index.pk), results.get(index.pk) or _not_deployed(index), facts.get(index.pk)
        )
        for index in indexes
    }


def index_check_enqueue(*, index: PrivateIndex) -> None:
    """Queue a check of this index once the transaction commits (one queued check per index)."""
    job_enqueue("provisioning.check_jobs.check_index", index.pk)
