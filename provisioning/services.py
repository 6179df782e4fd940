"""Everything that changes an index: request, approve, provision, restart, tear down, credentials.

Views and jobs call these; they call the driver. Jobs run the `*_perform` functions, which take
a Redis lock per index so that two workers never work on the same index at once, and record
every step in ProvisioningStep so the page can show progress and a retry can resume.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
import string
import threading
from collections.abc import Iterator

import django_rq
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.exceptions import NoSuchJobError
from rq.job import Job

from portal.audit import audit_record
from portal.queueing import enqueue_after_commit, job_is_live, job_lost_its_worker
from provisioning.drivers.backend import get_runtime, get_store
from provisioning.drivers.base import DriverError
from provisioning.drivers.runtime import DeployStep
from provisioning.index_server import hash_token, verify_token
from provisioning.models import (
    IndexCredential,
    IndexState,
    PrivateIndex,
    ProvisioningStep,
    Team,
    validate_entra_group_id,
    validate_index_name,
)
from provisioning.pause import pause_point
from provisioning.spec import SHARE_CONFIG, TOKENS_PATH, IndexSpec, Placement, build_index_spec

logger = logging.getLogger(__name__)

Op = ProvisioningStep.Operation
QUEUE = "provisioning"
JOB_TIMEOUT = 1800
PORTAL_USERNAME = "portal-internal"


class StepFailed(Exception):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step
        self.message = message


# --- specs


def index_spec(index: PrivateIndex) -> IndexSpec:
    """The IndexSpec of an index that has a placement (reserved at the start of provisioning)."""
    return build_index_spec(
        index_id=index.pk,
        name=index.name,
        team=index.team.slug,
        size=index.size,
        # A copy: drivers record what the cloud decided in placement.resources (see _save_placement).
        placement=Placement.from_dict(copy.deepcopy(index.deployment)),
        upload_url=index.upload_url,
    )


def index_ca_pem(index: PrivateIndex) -> str | None:
    """The CA certificate clients must trust for this index, or None (public CA, or not built)."""
    return get_runtime().ca_certificate_pem(index_spec(index)) if index.deployment else None


# --- jobs and locks


def _enqueue(index: PrivateIndex, operation: str) -> None:
    """Enqueue the job for `operation` once the current transaction commits.

    The job id is per index and operation, so a double submit cannot queue the same work twice;
    a finished or failed job with that id is cleared first so a retry can reuse it.
    """
    from provisioning import jobs

    func = {Op.PROVISION: jobs.provision_index, Op.RESTART: jobs.restart_index, Op.TEARDOWN: jobs.teardown_index}[
        operation
    ]
    enqueue_after_commit(
        QUEUE, func, index.pk, job_id=f"index-{index.pk}-{operation}",
        job_timeout=JOB_TIMEOUT, result_ttl=0, failure_ttl=7 * 86400,
    )  # fmt: skip


def _index_jobs(index: PrivateIndex) -> Iterator[Job]:
    connection = django_rq.get_connection(QUEUE)
    for operation in Op.values:
        try:
            yield Job.fetch(f"index-{index.pk}-{operation}", connection=connection)
        except NoSuchJobError:
            continue


def has_live_job(index: PrivateIndex) -> bool:
    """A job is queued for the index, or running on a worker that still heartbeats."""
    return any(job_is_live(job) for job in _index_jobs(index))


def _notice_key(index_id: int) -> str:
    return f"index:{index_id}:resuming"


RESUMING_NOTICE = "Resuming after a worker stopped"


def index_resume_notice(index: PrivateIndex) -> str:
    """What the index page says while an index waits for its work to resume after its worker
    died (killed, out of memory, redeployed), instead of spinning silently; "" otherwise."""
    if not index.is_active:
        return ""
    try:
        notice = django_rq.get_connection(QUEUE).get(_notice_key(index.pk))
        if notice:
            return notice.decode()
        if any(job_lost_its_worker(job) for job in _index_jobs(index)):
            return f"{RESUMING_NOTICE}: its work continues within a minute."
    except (RedisConnectionError, RedisTimeoutError):
        return "The portal cannot reach Redis: work on this index continues once it is back."
    return ""


def _interrupted(index: PrivateIndex, operation: str) -> bool:
    """A step of `operation` was running when its worker died: resume from it."""
    return index.steps.filter(operation=operation, state=ProvisioningStep.State.RUNNING).exists()


@contextlib.contextmanager
def index_lock(index_id: int) -> Iterator[None]:
    """One worker per index at a time; a second job for the same index waits its turn.

    The lock lives INDEX_LOCK_TTL_SECONDS and a heartbeat renews it while the job runs, so a
    worker killed with SIGKILL frees the index within that time instead of a whole job timeout.
    """
    ttl = settings.INDEX_LOCK_TTL_SECONDS
    lock = django_rq.get_connection(QUEUE).lock(
        f"lock:index:{index_id}", timeout=ttl, blocking_timeout=JOB_TIMEOUT, thread_local=False
    )
    if not lock.acquire():
        raise RuntimeError(f"Index {index_id} stayed locked for {JOB_TIMEOUT} s.")
    connection = lock.redis
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(ttl / 3):
            with contextlib.suppress(Exception):  # a lost renewal shows up as a lost lock later
                lock.reacquire()

    beat = threading.Thread(target=heartbeat, name=f"lock-heartbeat-{index_id}", daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()
        with contextlib.suppress(Exception):
            connection.delete(_notice_key(index_id))  # the work ran: no longer "resuming"
        with contextlib.suppress(Exception):
            lock.release()


# --- requesting


def index_request(
    *, team: Team, name: str, size: str, requested_by, request: HttpRequest | None = None
) -> PrivateIndex:
    """Create an index (after validating its name) and start building it, or queue it for
    approval when INDEX_APPROVAL_REQUIRED is on. Raises ValidationError."""
    validate_index_name(name)
    if size not in settings.INDEX_SIZES:
        raise ValidationError({"size": "Choose one of the offered sizes."})
    if PrivateIndex.objects.holding_name(name).exists():
        raise ValidationError({"name": f"An index named {name} already exists."})
    if not settings.INDEX_APPROVAL_REQUIRED:
        # Redis down: fail before anything is recorded. (Should it go down between here and the
        # commit, the index stays "requested" and the next reconcile queues it.)
        django_rq.get_connection(QUEUE).ping()
    try:
        with transaction.atomic():
            index = PrivateIndex.objects.create(name=name, team=team, size=size, requested_by=requested_by)
            audit_record(
                action="index.requested", actor=requested_by, obj=index, request=request,
                details={"team": team.slug, "size": size},
            )  # fmt: skip
            if settings.INDEX_APPROVAL_REQUIRED:
                index.transition_to(IndexState.AWAITING_APPROVAL)
            else:
                _enqueue(index, Op.PROVISION)
    except IntegrityError as exc:  # the name was taken between the check and the insert
        raise ValidationError({"name": f"An index named {name} already exists."}) from exc
    return index


def index_approve(*, index: PrivateIndex, actor, request: HttpRequest | None = None) -> None:
    with transaction.atomic():
        index = PrivateIndex.objects.select_for_update().get(pk=index.pk)
        index.transition_to(IndexState.REQUESTED, decided_by=actor, decided_at=timezone.now())
        audit_record(action="index.approved", actor=actor, obj=index, request=request)
        _enqueue(index, Op.PROVISION)


def index_deny(*, index: PrivateIndex, actor, reason: str, request: HttpRequest | None = None) -> None:
    if not reason.strip():
        raise ValidationError({"reason": "Say why the request is denied."})
    with transaction.atomic():
        index = PrivateIndex.objects.select_for_update().get(pk=index.pk)
        index.transition_to(
            IndexState.DENIED, decided_by=actor, decided_at=timezone.now(), decision_reason=reason.strip()
        )
        audit_record(action="index.denied", actor=actor, obj=index, request=request, details={"reason": reason})


def index_retry(*, index: PrivateIndex, actor, request: HttpRequest | None = None) -> None:
    """Resume a failed index from the step that failed (a failed teardown resumes teardown)."""
    with transaction.atomic():
        index = PrivateIndex.objects.select_for_update().get(pk=index.pk)
        operation = Op.TEARDOWN if index.failed_operation == Op.TEARDOWN else Op.PROVISION
        target = IndexState.DELETING if operation == Op.TEARDOWN else IndexState.PROVISIONING
        index.transition_to(target, error="")
        audit_record(action="index.retried", actor=actor, obj=index, request=request,
                     details={"operation": operation, "step": index.failed_step})  # fmt: skip
        _enqueue(index, operation)


def index_restart(*, index: PrivateIndex, actor, request: HttpRequest | None = None) -> None:
    with transaction.atomic():
        index = PrivateIndex.objects.select_for_update().get(pk=index.pk)
        index.transition_to(IndexState.RESTARTING)
        audit_record(action="index.restart_requested", actor=actor, obj=index, request=request)
        _enqueue(index, Op.RESTART)


def index_delete(*, index: PrivateIndex, actor, request: HttpRequest | None = None) -> None:
    with transaction.atomic():
        index = PrivateIndex.objects.select_for_update().get(pk=index.pk)
        index.transition_to(IndexState.DELETING, error="")
        audit_record(action="index.delete_requested", actor=actor, obj=index, request=request)
        _enqueue(index, Op.TEARDOWN)


def team_set_entra_group(*, team: Team, group_id: str, actor=None, request: HttpRequest | None = None) -> bool:
    """Map `team` to the Entra group whose members belong to it (applied at their next sign-in).
    Returns whether anything changed; raises ValidationError for an id that is not a GUID."""
    group_id = group_id.strip().lower()
    validate_entra_group_id(group_id)
    if team.entra_group_id == group_id:
        return False
    previous = team.entra_group_id
    with transaction.atomic():
        team.entra_group_id = group_id
        team.save(update_fields=["entra_group_id"])
        audit_record(action="team.group_changed", actor=actor, obj=team, request=request,
                     details={"group": group_id or "none", "previous_group": previous or "none"})  # fmt: skip
    return True


# --- the work itself (run by jobs)


def _run_steps(index: PrivateIndex, operation: str, steps: list[DeployStep], *, resume: bool) -> None:
    """Run `steps` in order, recording each. With `resume`, steps already done are skipped."""
    rows = {row.name: row for row in index.steps.filter(operation=operation)}
    if not resume or set(rows) - {s.name for s in steps}:
        index.steps.filter(operation=operation).delete()
        rows = {}
    for position, step in enumerate(steps):
        if step.name not in rows:
            rows[step.name] = ProvisioningStep.objects.create(
                index=index, operation=operation, position=position, name=step.name, label=step.label
            )
    for step in steps:
        row = rows[step.name]
        if row.state == ProvisioningStep.State.DONE and not step.rerun:
            continue
        row.state, row.started_at, row.finished_at, row.error = ProvisioningStep.State.RUNNING, timezone.now(), None, ""
        row.attempts += 1
        row.save()
        pause_point(f"{index.pk}-{operation}-{step.name}")
        try:
            step.run()
        except DriverError as exc:
            message = exc.message
        except Exception as exc:
            logger.exception("Step %s of %s for index %s crashed", step.name, operation, index.pk)
            message = f"Unexpected error: {exc.__class__.__name__}: {exc}"
        else:
            row.state, row.finished_at = ProvisioningStep.State.DONE, timezone.now()
            row.save(update_fields=["state", "finished_at"])
            continue
        row.state, row.finished_at, row.error = ProvisioningStep.State.FAILED, timezone.now(), message
        row.save(update_fields=["state", "finished_at", "error"])
        raise StepFailed(step.name, message)


def _fail(index: PrivateIndex, operation: str, failure: StepFailed) -> None:
    if operation != Op.TEARDOWN and index.deployment:
        try:  # nothing half-running is left behind; the data stays for the retry
            get_runtime().halt(index_spec(index))
        except DriverError as exc:
            logger.warning("Could not halt index %s after failure: %s", index.pk, exc)
    index.transition_to(IndexState.FAILED, failed_operation=operation, failed_step=failure.step, error=failure.message)
    audit_record(
        action=f"index.{operation}_failed", obj=index, details={"step": failure.step, "error": failure.message}
    )


def _save_placement(index: PrivateIndex, placement: Placement) -> None:
    """Keep what the driver learnt while building (the FQDN Azure gave, a new DNS label after a
    taken one) so the URL shown is the real one and a retry starts from there."""
    if placement.as_dict() == index.deployment:
        return
    index.deployment = placement.as_dict()
    index.url = index_spec(index).url
    index.save(update_fields=["deployment", "url", "updated_at"])


def index_provision_perform(index_id: int) -> None:
    """Build (or resume building) the index, then mark it ready."""
    with index_lock(index_id):
        index = PrivateIndex.objects.select_related("team").get(pk=index_id)
        if index.state == IndexState.REQUESTED:
            index.transition_to(IndexState.PROVISIONING)
        if index.state != IndexState.PROVISIONING:
            logger.info("Index %s is %s; nothing to provision.", index_id, index.state)
            return
        resume = index.failed_operation == Op.PROVISION or _interrupted(index, Op.PROVISION)
        runtime = get_runtime()
        try:
            placement = runtime.reserve(index_id=index.pk, name=index.name, previous=index.deployment or None)
        except DriverError as exc:
            _fail(index, Op.PROVISION, StepFailed("reserve", exc.message))
            return
        index.deployment = placement.as_dict()
        spec = index_spec(index)
        index.url = spec.url
        index.save(update_fields=["deployment", "url", "updated_at"])
        steps = [
            *runtime.deploy_steps(spec),
            DeployStep("credentials", "Write the index credentials", lambda: credentials_write(index)),
        ]
        try:
            _run_steps(index, Op.PROVISION, steps, resume=resume)
        except StepFailed as failure:
            _save_placement(index, runtime.settled_placement(spec))
            _fail(index, Op.PROVISION, failure)
            return
        _save_placement(index, runtime.settled_placement(spec))
        index.transition_to(IndexState.READY, ready_at=timezone.now(), failed_operation="", failed_step="", error="")
        audit_record(action="index.provisioned", obj=index, details={"url": index.url})
        # The dashboard shows the certificate right away instead of at the next scheduled check.
        from provisioning.checks import index_check_enqueue  # checks imports this module

        index_check_enqueue(index=index)


def index_restart_perform(index_id: int) -> None:
    with index_lock(index_id):
        index = PrivateIndex.objects.select_related("team").get(pk=index_id)
        if index.state != IndexState.RESTARTING:
            return
        spec = index_spec(index)
        step = DeployStep("restart", "Restart Caddy and pypiserver", lambda: get_runtime().restart(spec))
        try:
            _run_steps(index, Op.RESTART, [step], resume=False)
        except StepFailed as failure:
            _fail(index, Op.RESTART, failure)
            return
        index.transition_to(IndexState.READY, failed_operation="", failed_step="", error="")
        audit_record(action="index.restarted", obj=index)


def index_teardown_perform(index_id: int) -> None:
    with index_lock(index_id):
        index = PrivateIndex.objects.select_related("team").get(pk=index_id)
        if index.state != IndexState.DELETING:
            return
        if index.deployment:
            resume = index.failed_operation == Op.TEARDOWN or _interrupted(index, Op.TEARDOWN)
            try:
                _run_steps(index, Op.TEARDOWN, get_runtime().teardown_steps(index_spec(index)), resume=resume)
            except StepFailed as failure:
                _fail(index, Op.TEARDOWN, failure)
                return
        index.credentials.filter(revoked_at=None).update(revoked_at=timezone.now())
        index.transition_to(
            IndexState.DELETED, deleted_at=timezone.now(), failed_operation="", failed_step="", error=""
        )
        audit_record(action="index.deleted", obj=index)


def index_reconcile() -> dict[str, int]:
    """Make the database true again after a crash or a restart of this machine.

    Indexes stuck in an active state with no live job get their job again; ready indexes whose
    processes or containers are gone are brought back. Returns counts for the caller to report.
    """
    counts = {"requeued": 0, "revived": 0, "errors": 0}
    operation_for = {
        IndexState.REQUESTED: Op.PROVISION,
        IndexState.PROVISIONING: Op.PROVISION,
        IndexState.RESTARTING: Op.RESTART,
        IndexState.DELETING: Op.TEARDOWN,
    }
    connection = django_rq.get_connection(QUEUE)
    for index in PrivateIndex.objects.filter(state__in=list(operation_for)).select_related("team"):
        jobs = list(_index_jobs(index))
        if any(job_is_live(job) for job in jobs):
            continue
        # A step left running means its worker died mid-way (silent, or already failed by RQ as
        # abandoned or as a lost work-horse): say so on the page until the work resumes.
        running = index.steps.filter(state=ProvisioningStep.State.RUNNING).values_list("label", flat=True).first()
        if running or any(job_lost_its_worker(job) for job in jobs):
            notice = f"{RESUMING_NOTICE}" + (f", from “{running}”." if running else ".")
            connection.set(_notice_key(index.pk), notice, ex=JOB_TIMEOUT)
            logger.warning("Index %s lost its worker; queueing its %s again.", index.name, index.state)
        _enqueue(index, operation_for[index.state])
        counts["requeued"] += 1
    # A ready index whose processes died is brought back, and checked at once so the dashboard
    # shows the revival (or the death, when it cannot come back) now, not at the next fleet check.
    from provisioning.checks import index_check_enqueue  # checks imports this module

    runtime = get_runtime()
    for index in PrivateIndex.objects.filter(state=IndexState.READY).select_related("team"):
        try:
            if runtime.ensure_running(index_spec(index)):
                counts["revived"] += 1
                audit_record(action="index.revived", obj=index)
                index_check_enqueue(index=index)
        except DriverError as exc:
            counts["errors"] += 1
            logger.warning("Could not bring index %s back: %s", index.name, exc)
            index_check_enqueue(index=index)
    return counts


# --- credentials


def portal_read_password(index: PrivateIndex) -> str:
    """The portal's own read token for an index, derived from SECRET_KEY and never stored.
    The portal uses it to confirm that uploaded files are served."""
    return hmac.new(settings.SECRET_KEY.encode(), f"portal-read:{index.pk}".encode(), hashlib.sha256).hexdigest()


def portal_read_credential(index: PrivateIndex) -> tuple[str, str]:
    return PORTAL_USERNAME, portal_read_password(index)


def tokens_file(index: PrivateIndex) -> bytes:
    """The index server's tokens file: every active token (read and publish tokens both read;
    publishing goes through the portal) and the portal's own, as hashes only."""
    # A salt derived from the index keeps the file identical between writes (see credentials_write).
    salt = hashlib.sha256(f"salt:{index.pk}".encode()).digest()[:16]
    tokens = {PORTAL_USERNAME: hash_token(portal_read_password(index), salt=salt)}
    tokens |= {c.username: c.password_hash for c in index.credentials.filter(revoked_at=None).order_by("username")}
    return json.dumps({"version": 1, "tokens": tokens}, indent=1, sort_keys=True).encode()


def credentials_write(index: PrivateIndex) -> None:
    """Write the tokens file to the config share when it differs from what is there; the index
    server re-reads it within a second, so no restart is needed."""
    get_store().write_if_changed(index_spec(index), SHARE_CONFIG, TOKENS_PATH, tokens_file(index))


@functools.cache
def _unknown_user_hash() -> str:
    return hash_token(new_password())


def credential_authenticate(*, index: PrivateIndex, username: str, password: str) -> IndexCredential | None:
    """The index's active (not revoked) token with this user name and password, or None."""
    credential = index.credentials.filter(username=username, revoked_at=None).first()
    # Same work for an unknown user as for a wrong password: the timing tells no user names.
    matches = verify_token(credential.password_hash if credential else _unknown_user_hash(), password)
    return credential if credential is not None and matches else None


PASSWORD_ALPHABET = string.ascii_letters + string.digits


def new_password(length: int = 40) -> str:
    """~238 random bits of letters and digits only: a password starting with "-" would be read as
    an option by twine and pip (`-p -abc`), and none needs quoting in a shell, URL or INI file."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))


def _username(kind: str, label: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:24] or kind
    return f"{slug}-{secrets.token_hex(3)}"


def credential_create(
    *, index: PrivateIndex, kind: str, label: str, actor, request: HttpRequest | None = None
) -> tuple[IndexCredential, str]:
    """Create a token and return it with its password, which is not kept anywhere: show it once."""
    if kind not in IndexCredential.Kind.values:
        raise ValidationError({"kind": "Choose read or publish."})
    label = label.strip() or f"{kind} token"
    if not index.is_ready:
        raise ValidationError("Credentials can be created once the index is ready.")
    password = new_password()
    credential = IndexCredential.objects.create(
        index=index, label=label[:100], username=_username(kind, label), kind=kind,
        password_hash=hash_token(password), created_by=actor,
    )  # fmt: skip
    try:
        credentials_write(index)
    except DriverError as exc:
        credential.delete()
        raise ValidationError(f"The credential could not be written to the index: {exc.message}") from exc
    audit_record(action="credential.created", actor=actor, obj=index, request=request,
                 details={"username": credential.username, "kind": kind})  # fmt: skip
    return credential, password


def credential_revoke(*, credential: IndexCredential, actor, request: HttpRequest | None = None) -> None:
    if credential.revoked_at is not None:
        return
    credential.revoked_at = timezone.now()
    credential.save(update_fields=["revoked_at"])
    credentials_write(credential.index)
    audit_record(action="credential.revoked", actor=actor, obj=credential.index, request=request,
                 details={"username": credential.username})  # fmt: skip
