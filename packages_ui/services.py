"""Everything that changes what an index serves: store, delete, refresh, integrity check, mirror.

One write path: the drag-and-drop page, the upload API (twine) and mirror runs all call
`package_store`, which validates the file, enforces PyPI's immutability rules, writes it to the
package share and records it. Nothing else writes to an index's packages, and the index serves
only what the manifest lists (packages_ui/manifest.py). After a batch, one coalesced refresh job
per index writes the manifest (the index server picks it up without a restart) and confirms,
through the index's own /simple/<project>/ page with the portal's internal read token, that every
new file is served.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import django_rq
import redis
import requests
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from packages_ui.manifest import index_manifest
from packages_ui.models import MirrorRun, PackageFile, UnrecordedFile
from packages_ui.receiving import ReceivedFile
from packages_ui.validation import (
    DistributionError,
    ValidatedDistribution,
    distribution_identity,
    file_sha256,
    sha256_of_chunks,
    validate_distribution,
)
from portal.audit import audit_record
from portal.job_table import JOBS
from portal.permissions import is_portal_admin
from portal.queueing import job_enqueue, job_enqueue_now
from provisioning.drivers.backend import get_runtime, get_store
from provisioning.drivers.base import DriverError
from provisioning.models import IndexCredential, PrivateIndex, index_spec
from provisioning.operations import driver_retrying, index_lock
from provisioning.services import portal_read_credential
from provisioning.spec import MANIFEST_PATH, METADATA_DIR, SHARE_CONFIG, SHARE_PACKAGES

logger = logging.getLogger(__name__)

# Jobs are named by dotted path, so this module need not import jobs.py (which imports it);
# their queues and timeouts: portal/job_table.py.
REFRESH_JOB = "packages_ui.jobs.refresh_packages"
MIRROR_JOB = "packages_ui.jobs.mirror_packages"
INTEGRITY_JOB = "packages_ui.jobs.check_package_integrity"
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
IMMUTABILITY_RULE = (
    "Versions are immutable: a file name, or the same project, version and tags spelled differently, "
    "can be published once per index, also after a deletion. Publish a new version instead."
)


def _redis():
    """The Redis of the package jobs: the refresh markers and the upload locks."""
    return django_rq.get_connection(JOBS[REFRESH_JOB].queue)


def _pending_key(index_id: int) -> str:
    return f"packages:refresh-pending:{index_id}"


def _running_key(index_id: int) -> str:
    return f"packages:refresh-running:{index_id}"


def _queued_key(index_id: int) -> str:
    return f"packages:refresh-queued:{index_id}"


def _identity_lock(index_id: int, identity: str):
    # Two uploads of the same file (in any spelling) must not both pass the duplicate check.
    return _redis().lock(f"lock:package:{index_id}:{identity}", timeout=3600, blocking_timeout=5)


def metadata_path(filename: str) -> str:
    """Where a wheel's PEP 658 metadata file lives on the package share."""
    return f"{METADATA_DIR}/{filename}.metadata"


# --- storing and deleting


def _taken_error(
    index: PrivateIndex, filename: str, identity: str, *, adopting: bool = False
) -> DistributionError | None:
    """Why `filename` cannot be published on the index, or None when it can. When `adopting` a
    file found on the share, that file itself does not count against its own name."""
    taken = index.package_files.filter(Q(filename=filename) | Q(identity=identity)).first()
    if taken is None:
        if not adopting and index.unrecorded_files.filter(path=filename).exists():
            return DistributionError(
                f"A file named {filename} is on the index's share but was not published through the portal. "
                "An admin must resolve it on the package page first.",
                code="duplicate",
            )
        return None
    if taken.filename != filename:
        what = f"{filename} is the same file as {taken.filename}"
    else:
        what = f"{filename} already exists"
    when = " (deleted since)" if taken.is_deleted else ""
    return DistributionError(f"File already exists: {what} on this index{when}. {IMMUTABILITY_RULE}", code="duplicate")


def package_store(
    *,
    index: PrivateIndex,
    received: ReceivedFile,
    actor,
    source: str = PackageFile.Source.UPLOAD,
    credential: IndexCredential | None = None,
    request: HttpRequest | None = None,
    schedule_refresh: bool = True,
) -> PackageFile:
    """Validate the received file and write it to the index's package share, then record it.
    Raises DistributionError (with a message for the uploader) and writes nothing when the file
    is invalid or was ever published on this index, in any spelling."""
    if not index.is_serving:
        raise DistributionError("The index is not ready; try again once it is.", code="index")
    # Cheap refusal before reading the whole archive; checked again under the lock below.
    try:
        identity = distribution_identity(received.filename)
    except DistributionError:
        identity = ""  # validation below says what is wrong with the name
    if identity and (error := _taken_error(index, received.filename, identity)):
        raise error
    started = time.perf_counter()
    checked = validate_distribution(received.path, received.filename, sha256=received.sha256)
    validated = time.perf_counter()
    lock = _identity_lock(index.pk, checked.identity)
    if not lock.acquire():
        raise DistributionError(f"{checked.filename} is being uploaded by someone else right now.", code="duplicate")
    try:
        if error := _taken_error(index, checked.filename, checked.identity):
            raise error
        _write_distribution(index, received.path, checked)
        logger.info(
            "Stored %s on %s: validated in %.2f s, written in %.2f s.",
            checked.filename, index.name, validated - started, time.perf_counter() - validated,
        )  # fmt: skip
        with transaction.atomic():
            package = _record(
                index, checked, source=source, uploaded_via=credential.label if credential else "",
                uploaded_by=actor if getattr(actor, "is_authenticated", False) else None,
            )  # fmt: skip
            details = {"filename": checked.filename, "sha256": checked.sha256, "source": source}
            if credential is not None:
                details |= {"token_label": credential.label, "username": credential.username}
            audit_record(action="package.stored", actor=actor, obj=index, request=request, details=details)
            if schedule_refresh:
                refresh_request(index=index)
    finally:
        with contextlib.suppress(Exception):
            lock.release()
    return package


def _metadata_sha256(checked: ValidatedDistribution) -> str:
    return sha256_of_chunks([checked.metadata]) if checked.metadata else ""


def _record(index: PrivateIndex, checked: ValidatedDistribution, **fields) -> PackageFile:
    """The PackageFile row of a checked distribution (what the manifest will announce)."""
    return PackageFile.objects.create(
        index=index, filename=checked.filename, identity=checked.identity, project=checked.project,
        version=checked.version, kind=checked.kind, size=checked.size, sha256=checked.sha256,
        requires_python=checked.requires_python or "", metadata_sha256=_metadata_sha256(checked), **fields,
    )  # fmt: skip


def _write_metadata(index: PrivateIndex, checked: ValidatedDistribution) -> None:
    """A wheel's METADATA as its PEP 658 file on the package share (nothing for an sdist)."""
    if checked.metadata:
        data = checked.metadata
        get_store().write_file(
            index_spec(index), SHARE_PACKAGES, metadata_path(checked.filename), io.BytesIO(data), size=len(data)
        )


def _validated_from_share(index: PrivateIndex, path: str) -> ValidatedDistribution:
    """Run the upload's validation on a file already on the package share (a local copy of it).
    Raises DistributionError, or DriverError when the share cannot be read."""
    with tempfile.TemporaryDirectory(prefix="portal-share-copy-") as tmp:
        local = Path(tmp) / "file"
        with open(local, "wb") as out:
            for chunk in get_store().read_file(index_spec(index), SHARE_PACKAGES, path):
                out.write(chunk)
        return validate_distribution(local, path)


def _write_distribution(index: PrivateIndex, path: Path, checked: ValidatedDistribution) -> None:
    """The file (flat on the share, as pypiserver expects) and, for a wheel, its metadata file.
    Either both are written or neither is left behind."""
    spec, store = index_spec(index), get_store()
    written: list[str] = []
    try:
        store.write_local_file(spec, SHARE_PACKAGES, checked.filename, path, size=checked.size)
        written.append(checked.filename)
        _write_metadata(index, checked)
    except (DriverError, OSError) as exc:
        for done in written:
            with contextlib.suppress(DriverError, OSError):
                store.delete_file(spec, SHARE_PACKAGES, done)
        message = exc.message if isinstance(exc, DriverError) else (exc.strerror or str(exc))
        raise DistributionError(f"The file could not be written to the index: {message}", code="storage") from exc


def package_delete(*, index: PrivateIndex, package: PackageFile, actor, request: HttpRequest | None = None) -> None:
    """Stop serving the file and remove it from the share. Admins only: a published file is
    something others may depend on. The row stays (state deleted), so the name stays taken.
    Raises PermissionDenied, or ValidationError when the share cannot be changed."""
    if not is_portal_admin(actor):
        raise PermissionDenied("Only a portal admin can delete a published file.")
    if package.index_id != index.pk:
        raise ValueError(f"{package.filename} is not on {index.name}.")
    if package.is_deleted:
        return
    with transaction.atomic():
        package.state, package.deleted_at = PackageFile.State.DELETED, timezone.now()
        package.save(update_fields=["state", "deleted_at"])
        audit_record(action="package.deleted", actor=actor, obj=index, request=request,
                     details={"filename": package.filename, "sha256": package.sha256})  # fmt: skip
    # Served no more before its bytes go: the manifest first, then the share.
    try:
        refresh_manifest(index)
    except DriverError as exc:
        # The bytes stay, so the index never lists a file it cannot send. The queued refresh
        # (retried by the runner) stops serving it; the integrity check then lists the bytes as
        # unrecorded for removal.
        refresh_request(index=index)
        raise ValidationError(
            f"{package.filename} is deleted from the records, but the index could not be updated yet "
            f"({exc.message}). A refresh is queued to stop serving it."
        ) from exc
    spec, store = index_spec(index), get_store()
    try:
        store.delete_file(spec, SHARE_PACKAGES, package.filename)
        store.delete_file(spec, SHARE_PACKAGES, metadata_path(package.filename))
    except DriverError as exc:
        raise ValidationError(f"The file is no longer served but could not be removed: {exc.message}") from exc


# --- going live: the manifest


def refresh_manifest(index: PrivateIndex) -> bool:
    """Write the index's manifest when it differs from the one on the share; True when written.
    Raises DriverError."""
    return get_store().write_if_changed(index_spec(index), SHARE_CONFIG, MANIFEST_PATH, index_manifest(index))


def refresh_request(*, index: PrivateIndex) -> None:
    """Ask for a refresh of the index once the current transaction commits.

    Coalescing: a "pending" flag says some change is not yet live; a "queued" marker makes sure
    at most one refresh job waits in the queue per index. A running job clears "queued" as it
    starts, so a change that arrives during a refresh queues the next one, which waits for the
    index lock and then picks up everything that arrived meanwhile.
    """
    index_id = index.pk

    def enqueue() -> None:
        conn = _redis()
        conn.set(_pending_key(index_id), "1")
        if conn.set(_queued_key(index_id), "1", nx=True, ex=settings.PACKAGES_REFRESH_JOB_TIMEOUT_SECONDS * 2):
            # No job id: the "queued" marker already keeps it to one waiting job per index.
            job_enqueue_now(REFRESH_JOB, index_id)

    transaction.on_commit(enqueue)


def packages_refresh(*, index: PrivateIndex, actor, request: HttpRequest | None = None) -> None:
    """A refresh asked for on the package page (e.g. files stored but not yet seen served)."""
    if not index.is_serving:
        raise ValidationError(f"The index is {index.get_state_display().lower()}; it cannot be refreshed now.")
    with transaction.atomic():
        audit_record(action="packages.refresh_requested", actor=actor, obj=index, request=request)
        refresh_request(index=index)


def refresh_is_pending(index: PrivateIndex) -> bool:
    pending, queued, running = _redis().mget(_pending_key(index.pk), _queued_key(index.pk), _running_key(index.pk))
    return pending is not None or queued is not None or int(running or 0) > 0


def packages_refresh_perform(index_id: int) -> None:
    """Write the manifest, then mark live every stored file the index is seen serving.
    Loops while changes keep arriving, so a burst of uploads costs one or two refreshes."""
    conn = _redis()
    # Counted, not a flag: a second job may wait for the lock while the first runs. The expiry
    # cleans up after a worker killed mid-job.
    conn.incr(_running_key(index_id))
    conn.expire(_running_key(index_id), settings.PACKAGES_REFRESH_JOB_TIMEOUT_SECONDS * 2)
    conn.delete(_queued_key(index_id))
    try:
        _refresh_until_settled(conn, index_id)
    finally:
        conn.decr(_running_key(index_id))


def _refresh_until_settled(conn: redis.Redis, index_id: int) -> None:
    # The operation runner's lock and retry policy; but a refresh that fails never fails the index.
    with index_lock(index_id):
        while conn.getdel(_pending_key(index_id)) is not None:
            index = PrivateIndex.objects.select_related("team").get(pk=index_id)
            if not index.is_serving:
                logger.info("Index %s is %s; no refresh.", index_id, index.state)
                return
            waiting = list(index.package_files.served().filter(state=PackageFile.State.STORED))
            started = time.monotonic()
            try:
                driver_retrying(functools.partial(refresh_manifest, index))
            except DriverError as exc:
                # The index keeps serving what it served: nothing is down, the new files wait.
                audit_record(action="packages.refresh_failed", obj=index, details={"error": exc.message})
                raise
            live = served_check(index=index, packages=waiting)
            PackageFile.objects.filter(pk__in=[p.pk for p in live], state=PackageFile.State.STORED).update(
                state=PackageFile.State.LIVE, live_at=timezone.now()
            )
            missing = [p.filename for p in waiting if p not in live]
            audit_record(
                action="packages.refreshed", obj=index,
                details={"live": len(live), "not_served": missing, "seconds": round(time.monotonic() - started, 2)},
            )  # fmt: skip
            if missing:
                logger.warning("Index %s does not serve %s after a refresh.", index.name, ", ".join(missing))


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
    ca_pem = get_runtime().ca_certificate_pem(spec)
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
                    if served.get(package.filename) == package.sha256:
                        live.append(package)
                        waiting.remove(package)
            if not waiting or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    return live


# --- the truth on the share: integrity check and adoption


@dataclass
class IntegrityReport:
    """What the share holds beside the records: files that changed or went missing, and files
    the portal did not write. `adopted`/`refused` are filled by packages_resync."""

    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.changed or self.missing or self.unrecorded)

    def summary(self) -> dict[str, int]:
        return {k: len(v) for k, v in vars(self).items()}


def _is_distribution_path(path: str) -> bool:
    return "/" not in path  # distributions lie flat; metadata files below METADATA_DIR/


def packages_integrity_check(*, index: PrivateIndex) -> IntegrityReport:
    """Compare the package share with the records by sha256 (the whole share is read and hashed:
    a same-size swap is found too). Changed and missing files are flagged and leave the manifest;
    unrecorded files are listed for an admin. Nothing found on the share is adopted here.
    Raises DriverError when the share cannot be read."""
    spec, store = index_spec(index), get_store()
    on_share = {f.path: f for f in store.list_files(spec, SHARE_PACKAGES) if _is_distribution_path(f.path)}
    # Hash outside any transaction: this can take long on a big share.
    hashes = {path: sha256_of_chunks(store.read_file(spec, SHARE_PACKAGES, path)) for path in on_share}
    report = IntegrityReport()
    rows = {p.filename: p for p in index.package_files.all()}
    now = timezone.now()
    with transaction.atomic():
        served_before = set(index.package_files.served().values_list("pk", flat=True))
        for filename, row in rows.items():
            if row.is_deleted:
                continue
            if filename not in hashes:
                problem = PackageFile.Problem.MISSING
                report.missing.append(filename)
            elif hashes[filename] != row.sha256:
                problem = PackageFile.Problem.CHANGED
                report.changed.append(filename)
            else:
                problem = PackageFile.Problem.NONE
            row.problem, row.checked_at = problem, now
            row.save(update_fields=["problem", "checked_at"])
        # A deleted file whose bytes are back on the share is as unrecorded as a foreign one.
        unrecorded = {p: on_share[p] for p in hashes if p not in rows or rows[p].is_deleted}
        index.unrecorded_files.exclude(path__in=list(unrecorded)).delete()
        for path, found in unrecorded.items():
            UnrecordedFile.objects.update_or_create(
                index=index, path=path, defaults={"size": found.size, "sha256": hashes[path]}
            )
            report.unrecorded.append(path)
        if set(index.package_files.served().values_list("pk", flat=True)) != served_before:
            refresh_request(index=index)
        if not report.clean:
            audit_record(action="packages.integrity_problems", obj=index, details=report.summary())
    return report


def packages_resync(*, index: PrivateIndex, actor, request: HttpRequest | None = None) -> IntegrityReport:
    """An admin's resync: the integrity check, then every unrecorded file that passes the same
    checks as an upload (validation and immutability) is adopted and recorded as found on the
    share. Changed files are never adopted: their published bytes stay the record.
    Raises PermissionDenied, or ValidationError when the share cannot be read."""
    if not is_portal_admin(actor):
        raise PermissionDenied("Only a portal admin can adopt files found on the share.")
    try:
        report = packages_integrity_check(index=index)
        for unrecorded in list(index.unrecorded_files.all()):
            outcome = _adopt(index, unrecorded, actor)
            (report.refused if outcome else report.adopted).append(
                f"{unrecorded.path}: {outcome}" if outcome else unrecorded.path
            )
    except DriverError as exc:
        raise ValidationError(f"The share could not be read: {exc.message}") from exc
    audit_record(action="packages.resynced", actor=actor, obj=index, request=request, details=report.summary())
    return report


def _adopt(index: PrivateIndex, unrecorded: UnrecordedFile, actor) -> str:
    """Record one unrecorded file after the upload checks; '' when adopted, else why not."""
    try:
        identity = distribution_identity(unrecorded.path)
        if error := _taken_error(index, unrecorded.path, identity, adopting=True):
            return error.message
        checked = _validated_from_share(index, unrecorded.path)
    except DistributionError as exc:
        return exc.message
    _write_metadata(index, checked)
    with transaction.atomic():
        _record(index, checked, source=PackageFile.Source.RESYNC, checked_at=timezone.now())
        unrecorded.delete()
        audit_record(action="package.adopted", actor=actor, obj=index,
                     details={"filename": checked.filename, "sha256": checked.sha256})  # fmt: skip
        refresh_request(index=index)
    return ""


def integrity_check_enqueue(*, index: PrivateIndex) -> None:
    job_enqueue(INTEGRITY_JOB, index.pk)


def unrecorded_remove(
    *, index: PrivateIndex, unrecorded: UnrecordedFile, actor, request: HttpRequest | None = None
) -> None:
    """An admin removes a file the portal did not write from the share."""
    if not is_portal_admin(actor):
        raise PermissionDenied("Only a portal admin can remove files found on the share.")
    try:
        get_store().delete_file(index_spec(index), SHARE_PACKAGES, unrecorded.path)
    except DriverError as exc:
        raise ValidationError(f"The file could not be removed: {exc.message}") from exc
    audit_record(action="package.unrecorded_removed", actor=actor, obj=index, request=request,
                 details={"filename": unrecorded.path, "sha256": unrecorded.sha256})  # fmt: skip
    unrecorded.delete()


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
    if not index.is_serving:
        raise ValidationError("The index is not ready.")
    with transaction.atomic():
        run = MirrorRun.objects.create(
            index=index, requested_by=actor, requirements="\n".join(lines),
            python_version=python_version, platform=platform,
        )  # fmt: skip
        audit_record(action="packages.mirror_requested", actor=actor, obj=index, request=request,
                     details={"requirements": lines, "python": python_version, "platform": platform})  # fmt: skip
        job_enqueue(MIRROR_JOB, run.pk)
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
            refresh_request(index=run.index)


def _mirror_store_one(run: MirrorRun, path: Path) -> dict[str, str]:
    received = ReceivedFile(path=path, filename=path.name, sha256=file_sha256(path))
    existing = PackageFile.objects.filter(index=run.index, filename=path.name).first()
    if existing is not None and existing.sha256 == received.sha256:
        return {"filename": path.name, "outcome": "present", "message": "Already on the index (same sha256)."}
    try:
        package_store(
            index=run.index, received=received, actor=run.requested_by, source=PackageFile.Source.MIRROR,
            schedule_refresh=False,
        )  # fmt: skip
    except DistributionError as exc:
        return {"filename": path.name, "outcome": "rejected", "message": exc.message}
    return {"filename": path.name, "outcome": "stored", "message": "Stored."}


# --- yanking (PEP 592) and metadata files for older uploads (PEP 658)

YANK_REASON_MAX = 500


@dataclass
class YankResult:
    """What a yank or un-yank touched: every file of the release (or the one file), and which of
    them changed state."""

    index: str
    project: str
    version: str
    yanked: bool
    reason: str
    files: list[str]
    changed: list[str]

    def as_dict(self) -> dict:
        return vars(self).copy()


def _same_version(recorded: str, asked: str) -> bool:
    try:
        return Version(recorded) == Version(asked)
    except InvalidVersion:
        return recorded == asked


def package_yank(
    *, index: PrivateIndex, project: str, version: str | None = None, filename: str | None = None,
    reason: str = "", actor, undo: bool = False, request: HttpRequest | None = None,
) -> YankResult:  # fmt: skip
    """Yank (or, with `undo`, un-yank) a whole release (all its present files) or one file.
    pip and uv then skip it unless it is pinned exactly, and print the reason. Publishers and
    leads of the index's team and admins may; `actor=None` is the operator's command line.
    Raises PermissionDenied, or ValidationError for an unknown release or file."""
    if actor is not None and not index.can_publish(actor):
        raise PermissionDenied("Only publishers and team leads can yank this index's releases.")
    if (version is None) == (filename is None):
        raise ValueError("Give either a version or a file name.")
    reason = " ".join(reason.split())[:YANK_REASON_MAX] if not undo else ""
    files = index.package_files.present().filter(project=canonicalize_name(project))
    if filename is not None:
        files, what = files.filter(filename=filename), filename
    else:
        what = f"{canonicalize_name(project)} {version}"
    with transaction.atomic():
        rows = list(files.select_for_update().order_by("filename"))
        if version is not None:
            # PEP 440 equality: "2" names release 2.0.
            rows = [p for p in rows if _same_version(p.version, version)]
        if not rows:
            raise ValidationError(f"No file of {what} on {index.name}.")
        changed = [p for p in rows if p.yanked == undo or (not undo and p.yanked_reason != reason)]
        for package in changed:
            package.yanked, package.yanked_reason = not undo, reason
            package.save(update_fields=["yanked", "yanked_reason"])
        result = YankResult(
            index=index.name, project=rows[0].project, version=rows[0].version, yanked=not undo, reason=reason,
            files=[p.filename for p in rows], changed=[p.filename for p in changed],
        )  # fmt: skip
        if changed:
            audit_record(
                action="package.unyanked" if undo else "package.yanked", actor=actor, obj=index, request=request,
                details={"project": result.project, "version": result.version, "files": result.changed,
                         "reason": reason},
            )  # fmt: skip
            refresh_request(index=index)
    return result


@dataclass
class BackfillReport:
    """One index's metadata backfill: wheels given their metadata file, and wheels that could not be."""

    index: str
    written: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"index": self.index, "written": len(self.written), "failed": self.failed, "files": self.written}


def packages_backfill_metadata(*, index: PrivateIndex) -> BackfillReport:
    """Give every present wheel recorded without a metadata file (uploaded before PEP 658 support)
    its `metadata/<file>.metadata` on the package share, read from the wheel on the share with the
    upload's own validation, then one refresh. Idempotent: a wheel with metadata is left alone.
    A wheel whose bytes differ from the record is not touched (the integrity check flags it)."""
    report = BackfillReport(index=index.name)
    wheels = index.package_files.present().filter(kind="wheel", metadata_sha256="").order_by("filename")
    for package in wheels:
        try:
            checked = _validated_from_share(index, package.filename)
            if checked.sha256 != package.sha256:
                raise DistributionError("the bytes on the share differ from what was published", code="changed")
            if not checked.metadata:
                raise DistributionError("the wheel has no METADATA", code="metadata")
            _write_metadata(index, checked)
        except (DistributionError, DriverError) as exc:
            report.failed[package.filename] = exc.message
            continue
        package.metadata_sha256 = _metadata_sha256(checked)
        package.requires_python = checked.requires_python or ""
        package.save(update_fields=["metadata_sha256", "requires_python"])
        report.written.append(package.filename)
    if report.written or report.failed:
        with transaction.atomic():
            audit_record(action="packages.metadata_backfilled", obj=index,
                         details={"written": report.written, "failed": report.failed})  # fmt: skip
            if report.written:
                refresh_request(index=index)
    return report
