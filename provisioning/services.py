"""Everything that changes an index: request, approve, provision, restart, tear down, credentials.

Views and jobs call these; they call the driver. Jobs run the `*_perform` functions, which say
what each operation does (its steps, the state it ends in) and run it through the operation runner
(provisioning/operations.py: a Redis lock per index, every step recorded in ProvisioningStep,
transient driver errors retried, failures shown on the page, a retry resuming).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
import string

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from portal.audit import audit_record
from provisioning.checks import index_check_enqueue
from provisioning.drivers.backend import get_runtime, get_store
from provisioning.drivers.base import DriverError
from provisioning.drivers.runtime import DeployStep
from provisioning.index_server import hash_token, verify_token
from provisioning.models import (
    WORKING_STATE,
    IndexCredential,
    IndexOperation,
    IndexState,
    PrivateIndex,
    Team,
    index_spec,
    validate_entra_group_id,
    validate_index_name,
)
from provisioning.operations import (
    OperationSpec,
    Plan,
    StepFailed,
    driver_retrying,
    operation_enqueue,
    operation_run,
    operations_redis,
)

# The runner's answers about lost work, re-exported ("x as x"): pages, commands and jobs ask them
# of the services, as they ask everything else.
from provisioning.operations import has_live_job as has_live_job
from provisioning.operations import index_reconcile as index_reconcile
from provisioning.operations import index_resume_notice as index_resume_notice
from provisioning.spec import SHARE_CONFIG, TOKENS_PATH, Placement

logger = logging.getLogger(__name__)

PORTAL_USERNAME = "portal-internal"


# --- what clients must trust


def index_ca_pem(index: PrivateIndex) -> str | None:
    """The CA certificate clients must trust for this index, or None (public CA, or not built)."""
    return get_runtime().ca_certificate_pem(index_spec(index)) if index.deployment else None


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
        operations_redis().ping()
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
                operation_enqueue(index, IndexOperation.PROVISION)
    except IntegrityError as exc:  # the name was taken between the check and the insert
        raise ValidationError({"name": f"An index named {name} already exists."}) from exc
    return index


def index_approve(*, index: PrivateIndex, actor, request: HttpRequest | None = None) -> None:
    with transaction.atomic():
        index = PrivateIndex.objects.select_for_update().get(pk=index.pk)
        index.transition_to(IndexState.REQUESTED, decided_by=actor, decided_at=timezone.now())
        audit_record(action="index.approved", actor=actor, obj=index, request=request)
        operation_enqueue(index, IndexOperation.PROVISION)


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
        operation = index.retry_operation
        index.transition_to(WORKING_STATE[operation], error="")
        audit_record(action="index.retried", actor=actor, obj=index, request=request,
                     details={"operation": operation, "step": index.failed_step})  # fmt: skip
        operation_enqueue(index, operation)


def index_restart(*, index: PrivateIndex, actor, request: HttpRequest | None = None) -> None:
    with transaction.atomic():
        index = PrivateIndex.objects.select_for_update().get(pk=index.pk)
        index.transition_to(IndexState.RESTARTING)
        audit_record(action="index.restart_requested", actor=actor, obj=index, request=request)
        operation_enqueue(index, IndexOperation.RESTART)


def index_delete(*, index: PrivateIndex, actor, request: HttpRequest | None = None) -> None:
    with transaction.atomic():
        index = PrivateIndex.objects.select_for_update().get(pk=index.pk)
        index.transition_to(IndexState.DELETING, error="")
        audit_record(action="index.delete_requested", actor=actor, obj=index, request=request)
        operation_enqueue(index, IndexOperation.TEARDOWN)


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


# --- the work itself (run by jobs, through the operation runner)


def _save_placement(index: PrivateIndex, placement: Placement) -> None:
    """Keep what the driver learnt while building (the FQDN Azure gave, a new DNS label after a
    taken one) so the URL shown is the real one and a retry starts from there."""
    if placement.as_dict() == index.deployment:
        return
    index.deployment = placement.as_dict()
    index.url = index_spec(index).url
    index.save(update_fields=["deployment", "url", "updated_at"])


def _provision_plan(index: PrivateIndex) -> Plan:
    runtime = get_runtime()
    try:
        placement = driver_retrying(
            lambda: runtime.reserve(index_id=index.pk, name=index.name, previous=index.deployment or None)
        )
    except DriverError as exc:
        raise StepFailed("reserve", exc.message) from exc
    index.deployment = placement.as_dict()
    spec = index_spec(index)
    index.url = spec.url
    index.save(update_fields=["deployment", "url", "updated_at"])
    steps = [
        *runtime.deploy_steps(spec),
        DeployStep("credentials", "Write the index credentials", lambda: credentials_write(index)),
    ]
    # The steps record what the cloud decided in this spec's placement: kept, done or failed.
    return Plan(steps, settle=lambda: _save_placement(index, runtime.settled_placement(spec)))


def _provisioned(index: PrivateIndex) -> None:
    index.transition_to(IndexState.READY, ready_at=timezone.now(), failed_operation="", failed_step="", error="")
    audit_record(action="index.provisioned", obj=index, details={"url": index.url})
    # The dashboard shows the certificate right away instead of at the next scheduled check.
    index_check_enqueue(index=index)


def _restart_plan(index: PrivateIndex) -> Plan:
    spec = index_spec(index)
    return Plan([DeployStep("restart", "Restart Caddy and pypiserver", lambda: get_runtime().restart(spec))])


def _restarted(index: PrivateIndex) -> None:
    index.transition_to(IndexState.READY, failed_operation="", failed_step="", error="")
    audit_record(action="index.restarted", obj=index)


def _teardown_plan(index: PrivateIndex) -> Plan:
    return Plan(get_runtime().teardown_steps(index_spec(index)) if index.deployment else [])


def _torn_down(index: PrivateIndex) -> None:
    index.credentials.filter(revoked_at=None).update(revoked_at=timezone.now())
    index.transition_to(IndexState.DELETED, deleted_at=timezone.now(), failed_operation="", failed_step="", error="")
    audit_record(action="index.deleted", obj=index)


PROVISION = OperationSpec(IndexOperation.PROVISION, _provision_plan, _provisioned)
# A restart always runs whole: its one step is the restart.
RESTART = OperationSpec(IndexOperation.RESTART, _restart_plan, _restarted, resumes=False)
TEARDOWN = OperationSpec(IndexOperation.TEARDOWN, _teardown_plan, _torn_down)


def index_provision_perform(index_id: int) -> None:
    """Build (or resume building) the index, then mark it ready."""
    operation_run(index_id, PROVISION)


def index_restart_perform(index_id: int) -> None:
    operation_run(index_id, RESTART)


def index_teardown_perform(index_id: int) -> None:
    """Remove everything the index owns (resuming a failed teardown), then mark it deleted."""
    operation_run(index_id, TEARDOWN)


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
