"""Everything that changes what an index serves: store, delete, resync, restart, mirror.

Every write goes through the driver (`write_file` under a temporary name + rename), after the
file passed `validation.validate_distribution`. After a batch of changes one coalesced restart
job per index restarts pypiserver and confirms, through the index's own /simple/<project>/ page
with the portal's internal read token, that every new file is served.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import django_rq
import redis
import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from packaging.requirements import InvalidRequirement, Requirement

from packages_ui.models import MirrorRun, PackageFile
from packages_ui.receiving import ReceivedFile
from packages_ui.validation import (
    DistributionError,
    DistributionName,
    file_sha256,
    parse_distribution_filename,
    sha256_of_chunks,
    validate_distribution,
)
from portal.audit import audit_record
from portal.queueing import enqueue_after_commit, queue_now
from provisioning.drivers.base import DriverError, get_driver
from provisioning.models import IndexCredential, IndexState, PrivateIndex, ProvisioningStep, is_portal_admin
from provisioning.services import index_lock, index_spec, portal_read_credential
from provisioning.spec import SHARE_PACKAGES

logger = logging.getLogger(__name__)

QUEUE = "packages"
# Python versions and platforms offered by "Mirror from PyPI" (pip's --python-version/--platform).
MIRROR_PYTHON_VERSIONS = ["3.9", "3.10", "3.11", "3.12", "3.13", "3.14"]
MIRROR_PLATFORMS = [
    "manylinux2014_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux2014_aarch64",
    "musllinux_1_2_x86_64",
    "win_amd64",
    "macosx_11_0_arm64",
    "macosx_10_9_x86_64",
]


def _redis():
    return django_rq.get_connection(QUEUE)


def _pending_key(index_id: int) -> str:
    return f"packages:restart-pending:{index_id}"


def _running_key(index_id: int) -> str:
    return f"packages:restart-running:{index_id}"


def _queued_key(index_id: int) -> str:
    return f"packages:restart-queued:{index_id}"


def _file_lock(index_id: int, filename: str):
    # Two uploads of the same name must not both pass the duplicate check and both write.
    return _redis().lock(f"lock:package:{index_id}:{filename}", timeout=3600, blocking_timeout=5)


# --- storing and deleting


def package_store(
    *,
    index: PrivateIndex,
    received: ReceivedFile,
    actor,
    overwrite: bool = False,
    source: str = PackageFile.Source.UPLOAD,
    request: HttpRequest | None = None,
    schedule_restart: bool = True,
    credential: IndexCredential | None = None,
) -> PackageFile:
    """Validate the received file and write it to the index's package share, then record it.
    Raises DistributionError (with a message for the uploader) and writes nothing when the file
    is invalid or already present. Only a portal admin may overwrite an existing file.
    `credential`: the token an upload API request came with, named in the audit entry."""
    if not index.accepts_packages:
        raise DistributionError("The index is not ready; try again once it is.", code="index")
    overwrite = overwrite and actor is not None and is_portal_admin(actor)
    # Cheap refusal before reading the whole archive; re-checked under the lock below.
    if not overwrite and PackageFile.objects.filter(index=index, filename=received.filename).exists():
        raise _duplicate_error(received.filename)
    started = time.perf_counter()
    checked = validate_distribution(received.path, received.filename, sha256=received.sha256)
    validated = time.perf_counter()
    lock = _file_lock(index.pk, checked.filename)
    if not lock.acquire():
        raise DistributionError(f"{checked.filename} is being uploaded by someone else right now.", code="duplicate")
    try:
        existing = PackageFile.objects.filter(index=index, filename=checked.filename).first()
        if existing is not None and not overwrite:
            raise _duplicate_error(checked.filename)
        spec = index_spec(index)
        try:
            with open(received.path, "rb") as source_file:
                # Flat on the share, as pypiserver expects.
                get_driver().write_file(spec, SHARE_PACKAGES, checked.filename, source_file, size=checked.size)
        except DriverError as exc:
            raise DistributionError(
                f"The file could not be written to the index: {exc.message}", code="storage"
            ) from exc
        logger.info(
            "Stored %s on %s: validated in %.2f s, written in %.2f s.",
            checked.filename, index.name, validated - started, time.perf_counter() - validated,
        )  # fmt: skip
        with transaction.atomic():
            fields = {
                "project": checked.project, "version": checked.version, "kind": checked.kind,
                "size": checked.size, "sha256": checked.sha256, "uploaded_by": actor,
                "uploaded_at": timezone.now(), "source": source, "state": PackageFile.State.STORED, "live_at": None,
            }  # fmt: skip
            package = PackageFile.objects.update_or_create(index=index, filename=checked.filename, defaults=fields)[0]
            details = {"filename": checked.filename, "sha256": checked.sha256, "source": source}
            if credential is not None:  # "token_label": audit_record drops a key named "token"
                details.update(token_label=credential.label, username=credential.username)
            audit_record(
                action="package.overwritten" if existing else "package.stored", actor=actor, obj=index,
                request=request, details=details,
            )  # fmt: skip
            if schedule_restart:
                restart_request(index=index)
    finally:
        with contextlib.suppress(Exception):
            lock.release()
    return package


def _duplicate_error(filename: str) -> DistributionError:
    return DistributionError(
        f"{filename} already exists on this index. Versions are immutable: publish a new version instead.",
        code="duplicate",
    )


def package_delete(*, index: PrivateIndex, package: PackageFile, actor, request: HttpRequest | None = None) -> None:
    """Remove the file from the share and its record; the next restart stops serving it.
    Raises ValidationError when the share cannot be changed."""
    if package.index_id != index.pk:
        raise ValueError(f"{package.filename} is not on {index.name}.")
    try:
        get_driver().delete_file(index_spec(index), SHARE_PACKAGES, package.filename)
    except DriverError as exc:
        raise ValidationError(f"The file could not be deleted: {exc.message}") from exc
    with transaction.atomic():
        package.delete()
        audit_record(action="package.deleted", actor=actor, obj=index, request=request,
                     details={"filename": package.filename, "sha256": package.sha256})  # fmt: skip
        restart_request(index=index)


def packages_resync(*, index: PrivateIndex, actor, request: HttpRequest | None = None) -> dict[str, list[str]]:
    """Make the records match the share: add rows for files found there, drop rows whose file
    is gone, re-hash files whose size changed. Files that are not distributions are reported.
    Raises ValidationError when the share cannot be read."""
    spec = index_spec(index)
    driver = get_driver()
    rows = {p.filename: p for p in index.package_files.all()}
    report: dict[str, list[str]] = {"added": [], "removed": [], "updated": [], "ignored": []}
    names: dict[str, DistributionName] = {}
    # Read (and hash) the share first: that can take long, and no transaction waits on it.
    try:
        on_share = {f.path: f for f in driver.list_files(spec, SHARE_PACKAGES)}
        for path in on_share:
            try:
                names[path] = parse_distribution_filename(path)
            except DistributionError:
                report["ignored"].append(path)
        hashes = {
            path: sha256_of_chunks(driver.read_file(spec, SHARE_PACKAGES, path))
            for path in names
            if path not in rows or rows[path].size != on_share[path].size
        }
    except DriverError as exc:
        raise ValidationError(f"The share could not be read: {exc.message}") from exc

    with transaction.atomic():
        for filename, row in rows.items():
            if filename not in on_share:
                row.delete()
                report["removed"].append(filename)
        for path, sha256 in hashes.items():
            found, name, row = on_share[path], names[path], rows.get(path)
            if row is None:
                # get_or_create: an upload may have recorded the file since the rows were read.
                _row, created = PackageFile.objects.get_or_create(
                    index=index, filename=path,
                    defaults={
                        "project": name.project, "version": name.version, "kind": name.kind, "size": found.size,
                        "sha256": sha256, "source": PackageFile.Source.RESYNC,
                        "uploaded_at": found.modified or timezone.now(),
                    },
                )  # fmt: skip
                if created:
                    report["added"].append(path)
            else:
                row.size, row.sha256, row.state, row.live_at = found.size, sha256, PackageFile.State.STORED, None
                row.save(update_fields=["size", "sha256", "state", "live_at"])
                report["updated"].append(path)
        audit_record(action="packages.resynced", actor=actor, obj=index, request=request,
                     details={k: len(v) for k, v in report.items()})  # fmt: skip
        if report["added"] or report["removed"] or report["updated"]:
            restart_request(index=index)
    return report


# --- the coalesced restart


def restart_request(*, index: PrivateIndex) -> None:
    """Ask for a restart of the index once the current transaction commits.

    Coalescing: a "pending" flag says some change is not yet live; a "queued" marker makes sure
    at most one restart job waits in the queue per index. A running job clears "queued" as it
    starts, so a change that arrives during a restart queues the next one, which waits for the
    index lock and then picks up everything that arrived meanwhile.
    """
    index_id = index.pk

    def enqueue() -> None:
        from packages_ui import jobs

        conn = _redis()
        conn.set(_pending_key(index_id), "1")
        timeout = settings.PACKAGES_RESTART_JOB_TIMEOUT_SECONDS
        if conn.set(_queued_key(index_id), "1", nx=True, ex=timeout * 2):
            # No job id: the "queued" marker already keeps it to one waiting job per index.
            queue_now(QUEUE).enqueue(
                jobs.restart_packages, index_id, job_timeout=timeout, result_ttl=0, failure_ttl=7 * 86400
            )

    transaction.on_commit(enqueue)


def packages_restart(*, index: PrivateIndex, actor, request: HttpRequest | None = None) -> None:
    """A restart asked for on the package page (e.g. files stored but not yet seen served)."""
    if not index.accepts_packages:
        raise ValidationError(f"The index is {index.get_state_display().lower()}; pypiserver cannot be restarted now.")
    with transaction.atomic():
        audit_record(action="packages.restart_requested", actor=actor, obj=index, request=request)
        restart_request(index=index)


def restart_is_pending(index: PrivateIndex) -> bool:
    pending, queued, running = _redis().mget(_pending_key(index.pk), _queued_key(index.pk), _running_key(index.pk))
    return pending is not None or queued is not None or int(running or 0) > 0


def packages_restart_perform(index_id: int) -> None:
    """Restart pypiserver, then mark live every stored file the index is seen serving.
    Loops while changes keep arriving, so a burst of uploads costs one or two restarts."""
    conn = _redis()
    # Counted, not a flag: a second job may wait for the lock while the first runs. The expiry
    # cleans up after a worker killed mid-job.
    conn.incr(_running_key(index_id))
    conn.expire(_running_key(index_id), settings.PACKAGES_RESTART_JOB_TIMEOUT_SECONDS * 2)
    conn.delete(_queued_key(index_id))
    try:
        _restart_until_settled(conn, index_id)
    finally:
        conn.decr(_running_key(index_id))


def _restart_until_settled(conn: redis.Redis, index_id: int) -> None:
    with index_lock(index_id):
        while conn.getdel(_pending_key(index_id)) is not None:
            index = PrivateIndex.objects.select_related("team").get(pk=index_id)
            if not index.accepts_packages:
                logger.info("Index %s is %s; no package restart.", index_id, index.state)
                return
            waiting = list(index.package_files.filter(state=PackageFile.State.STORED))
            spec = index_spec(index)
            started = time.monotonic()
            try:
                get_driver().restart(spec)
            except DriverError as exc:
                index.refresh_from_db()
                # Only an index still in service fails here: a teardown requested meanwhile
                # (DELETING) goes on regardless of this restart.
                if index.accepts_packages:
                    index.transition_to(
                        IndexState.FAILED, failed_operation=ProvisioningStep.Operation.RESTART,
                        failed_step="restart", error=exc.message,
                    )  # fmt: skip
                audit_record(action="packages.restart_failed", obj=index, details={"error": exc.message})
                raise
            live = served_check(index=index, packages=waiting)
            now = timezone.now()
            PackageFile.objects.filter(pk__in=[p.pk for p in live], state=PackageFile.State.STORED).update(
                state=PackageFile.State.LIVE, live_at=now
            )
            missing = [p.filename for p in waiting if p not in live]
            audit_record(
                action="packages.restarted", obj=index,
                details={"live": len(live), "not_served": missing, "seconds": round(time.monotonic() - started, 2)},
            )  # fmt: skip
            if missing:
                logger.warning("Index %s does not serve %s after a restart.", index.name, ", ".join(missing))


HREF_RE = re.compile(r'href="([^"]+)"')


def _served_files(session: requests.Session, base_url: str, project: str) -> dict[str, str]:
    """{file name: sha256} as listed on the index's /simple/<project>/ page."""
    response = session.get(f"{base_url}/simple/{project}/", timeout=10)
    if response.status_code == 404:
        return {}
    response.raise_for_status()
    served: dict[str, str] = {}
    for href in HREF_RE.findall(response.text):
        url, _, fragment = href.partition("#")
        served[url.rsplit("/", 1)[-1]] = fragment.removeprefix("sha256=")
    return served


def served_check(*, index: PrivateIndex, packages: Iterable[PackageFile]) -> list[PackageFile]:
    """The packages the index serves with the right sha256, polled until all are seen or
    PACKAGES_SERVED_CHECK_TIMEOUT_SECONDS pass. Uses the portal's internal read token."""
    waiting = list(packages)
    if not waiting:
        return []
    spec = index_spec(index)
    ca_pem = get_driver().ca_certificate_pem(spec)
    live: list[PackageFile] = []
    with tempfile.TemporaryDirectory(prefix="portal-ca-") as tmp, requests.Session() as session:
        # trust_env off: REQUESTS_CA_BUNDLE in the environment would replace the index's CA.
        session.trust_env = False
        session.auth = portal_read_credential(index)
        if ca_pem:
            ca_file = Path(tmp) / "ca.pem"
            ca_file.write_text(ca_pem)
            session.verify = str(ca_file)
        deadline = time.monotonic() + settings.PACKAGES_SERVED_CHECK_TIMEOUT_SECONDS
        while waiting:
            for project in sorted({p.project for p in waiting}):
                try:
                    served = _served_files(session, spec.base_url, project)
                except requests.RequestException as exc:
                    logger.info("Served check of %s/%s: %s", index.name, project, exc)
                    continue
                for package in [p for p in waiting if p.project == project]:
                    if served.get(package.filename) in {package.sha256, ""}:
                        live.append(package)
                        waiting.remove(package)
            if not waiting or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    return live


# --- mirror from PyPI


def _parse_requirements(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if not lines:
        raise ValidationError({"requirements": "Give at least one requirement, e.g. requests==2.32.3."})
    if len(lines) > settings.PACKAGES_MIRROR_MAX_REQUIREMENTS:
        raise ValidationError({"requirements": f"At most {settings.PACKAGES_MIRROR_MAX_REQUIREMENTS} lines."})
    errors = []
    for line in lines:
        if line.startswith("-"):
            errors.append(f"{line}: options are not allowed, only requirements.")
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement as exc:
            errors.append(f"{line}: {exc}")
            continue
        if requirement.url:
            errors.append(f"{line}: direct URLs are not allowed; name a PyPI project.")
    if errors:
        raise ValidationError({"requirements": errors})
    return lines


def mirror_request(
    *, index: PrivateIndex, requirements: str, python_version: str, platform: str, actor,
    request: HttpRequest | None = None,
) -> MirrorRun:  # fmt: skip
    """Record a mirror run and queue its job. Raises ValidationError for bad input."""
    lines = _parse_requirements(requirements)
    if python_version not in MIRROR_PYTHON_VERSIONS:
        raise ValidationError({"python_version": "Choose one of the offered Python versions."})
    if platform not in MIRROR_PLATFORMS:
        raise ValidationError({"platform": "Choose one of the offered platforms."})
    if not index.accepts_packages:
        raise ValidationError("The index is not ready.")
    with transaction.atomic():
        run = MirrorRun.objects.create(
            index=index, requested_by=actor, requirements="\n".join(lines),
            python_version=python_version, platform=platform,
        )  # fmt: skip
        audit_record(action="packages.mirror_requested", actor=actor, obj=index, request=request,
                     details={"requirements": lines, "python": python_version, "platform": platform})  # fmt: skip
        from packages_ui import jobs

        enqueue_after_commit(
            QUEUE, jobs.mirror_packages, run.pk, job_id=f"packages-mirror-{run.pk}",
            job_timeout=settings.PACKAGES_MIRROR_TIMEOUT_SECONDS, result_ttl=0, failure_ttl=7 * 86400,
        )  # fmt: skip
    return run


def _pip_environment() -> dict[str, str]:
    # No user or machine pip configuration may redirect where the mirror downloads from.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k == "PIP_CERT"}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def mirror_perform(run_id: int) -> None:
    """Download the requirements with pip for the chosen target, then validate and store each
    file. pip failing (no such project, no wheel for the target) stores nothing. Any other
    error (the job timing out included) marks the run failed and stops pip."""
    run = MirrorRun.objects.select_related("index", "index__team", "requested_by").get(pk=run_id)
    if run.state != MirrorRun.State.QUEUED:
        return
    run.state = MirrorRun.State.DOWNLOADING
    run.save(update_fields=["state"])
    process: subprocess.Popen | None = None
    results: list[dict[str, str]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="portal-mirror-") as tmp:
            argv = [
                sys.executable, "-m", "pip", "download",
                "--only-binary=:all:", "--python-version", run.python_version, "--platform", run.platform,
                "--index-url", settings.PACKAGES_MIRROR_INDEX_URL, "--dest", tmp,
                "--no-input", "--progress-bar", "off", "--disable-pip-version-check", "--no-color",
                *run.requirement_lines,
            ]  # fmt: skip
            log: list[str] = []
            process = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=_pip_environment(), text=True, start_new_session=True,
            )  # fmt: skip
            last_save = 0.0
            assert process.stdout is not None
            for line in process.stdout:
                log.append(line.rstrip())
                if time.monotonic() - last_save > 0.5:
                    MirrorRun.objects.filter(pk=run.pk).update(log="\n".join(log[-200:]))
                    last_save = time.monotonic()
            returncode = process.wait()
            run.log = "\n".join(log[-200:])
            if returncode != 0:
                errors = [line for line in log if line.startswith("ERROR:")] or log[-3:]
                run.state, run.error, run.finished_at = MirrorRun.State.FAILED, "\n".join(errors), timezone.now()
                run.save(update_fields=["log", "state", "error", "finished_at"])
                audit_record(action="packages.mirror_failed", obj=run.index, details={"run": run.pk})
                return
            run.state = MirrorRun.State.STORING
            run.save(update_fields=["log", "state"])
            for path in sorted(Path(tmp).iterdir()):
                results.append(_mirror_store_one(run, path))
                MirrorRun.objects.filter(pk=run.pk).update(results=results)
        run.results = results
        run.state, run.finished_at = MirrorRun.State.DONE, timezone.now()
        run.save(update_fields=["results", "state", "finished_at"])
    except Exception as exc:
        logger.exception("Mirror run %s failed.", run.pk)
        error = f"The mirror run stopped: {str(exc) or type(exc).__name__}"
        MirrorRun.objects.filter(pk=run.pk).update(
            state=MirrorRun.State.FAILED, error=error, results=results, finished_at=timezone.now()
        )
        audit_record(action="packages.mirror_failed", obj=run.index, details={"run": run.pk, "error": error})
        raise
    finally:
        if process is not None and process.poll() is None:
            # start_new_session: pip and anything it started form their own process group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if any(r["outcome"] == "stored" for r in results):
            # Files stored before a failure are served too.
            restart_request(index=run.index)


def _mirror_store_one(run: MirrorRun, path: Path) -> dict[str, str]:
    received = ReceivedFile(path=path, filename=path.name, sha256=file_sha256(path))
    existing = PackageFile.objects.filter(index=run.index, filename=path.name).first()
    if existing is not None and existing.sha256 == received.sha256:
        return {"filename": path.name, "outcome": "present", "message": "Already on the index (same sha256)."}
    try:
        package_store(
            index=run.index, received=received, actor=run.requested_by, source=PackageFile.Source.MIRROR,
            schedule_restart=False,
        )  # fmt: skip
    except DistributionError as exc:
        return {"filename": path.name, "outcome": "rejected", "message": exc.message}
    return {"filename": path.name, "outcome": "stored", "message": "Stored."}
