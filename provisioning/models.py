"""Teams, private indexes, their provisioning steps and their credentials."""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Collection

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from portal.permissions import is_portal_admin
from provisioning.spec import IndexSpec, Placement, build_index_spec

INDEX_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])$")


def validate_index_name(value: str) -> None:
    """3–63 characters of lowercase letters, digits and hyphens, not starting or ending with a
    hyphen: a valid DNS label, so it can become the index's host name."""
    if not 3 <= len(value) <= 63:
        raise ValidationError("Use 3 to 63 characters.", code="length")
    if not INDEX_NAME_RE.match(value):
        raise ValidationError(
            "Use lowercase letters, digits and hyphens only, not starting or ending with a hyphen.",
            code="characters",
        )
    if "--" in value:
        raise ValidationError("Do not use two hyphens in a row.", code="double-hyphen")


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    # Entra ID group object id whose members belong to this team (mapped at sign-in).
    entra_group_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


GUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def validate_entra_group_id(value: str) -> None:
    """Entra group object ids are GUIDs (a display name would never match the `groups` claim)."""
    if value and not GUID_RE.fullmatch(value):
        raise ValidationError(f"{value!r} is not an Entra group object id (a GUID such as {uuid.UUID(int=0)}).")


class Membership(models.Model):
    class Role(models.TextChoices):
        MEMBER = "member", "Member"  # view indexes, get read credentials and snippets
        PUBLISHER = "publisher", "Publisher"  # also upload and delete packages
        LEAD = "lead", "Team lead"  # also request, restart and delete indexes

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "team"], name="one_membership_per_team")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} as {self.role}"


ROLE_RANK = {Membership.Role.MEMBER: 1, Membership.Role.PUBLISHER: 2, Membership.Role.LEAD: 3}


def teams_led_by(user) -> models.QuerySet[Team]:
    if is_portal_admin(user):
        return Team.objects.all()
    return Team.objects.filter(memberships__user=user, memberships__role=Membership.Role.LEAD)


class IndexState(models.TextChoices):
    REQUESTED = "requested", "Requested"
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    DENIED = "denied", "Denied"
    PROVISIONING = "provisioning", "Provisioning"
    READY = "ready", "Ready"
    RESTARTING = "restarting", "Restarting"
    FAILED = "failed", "Failed"
    DELETING = "deleting", "Deleting"
    DELETED = "deleted", "Deleted"


class IndexOperation(models.TextChoices):
    """What a job does to an index; each runs while the index is in its working state."""

    PROVISION = "provision", "Provision"
    RESTART = "restart", "Restart"
    TEARDOWN = "teardown", "Tear down"


# --- The state rules: each defined once here and used by services, checks, cost, the dashboard,
# the commands and (through PrivateIndex's properties) the templates.
S = IndexState
TRANSITIONS: dict[str, frozenset[str]] = {
    S.REQUESTED: frozenset({S.AWAITING_APPROVAL, S.PROVISIONING, S.FAILED}),
    S.AWAITING_APPROVAL: frozenset({S.REQUESTED, S.DENIED, S.FAILED}),
    S.DENIED: frozenset(),
    S.PROVISIONING: frozenset({S.READY, S.FAILED}),
    S.READY: frozenset({S.RESTARTING, S.DELETING, S.FAILED}),
    S.RESTARTING: frozenset({S.READY, S.FAILED}),
    S.FAILED: frozenset({S.PROVISIONING, S.DELETING}),
    S.DELETING: frozenset({S.DELETED, S.FAILED}),
    S.DELETED: frozenset(),
}
# The state an index is in while a job runs each operation.
WORKING_STATE = {
    IndexOperation.PROVISION: S.PROVISIONING,
    IndexOperation.RESTART: S.RESTARTING,
    IndexOperation.TEARDOWN: S.DELETING,
}
# States in which a job is (or should be) working on the index, and the operation it runs.
OPERATION_OF_ACTIVE_STATE = {
    S.REQUESTED: IndexOperation.PROVISION,
    **{state: operation for operation, state in WORKING_STATE.items()},
}
ACTIVE_STATES = frozenset(OPERATION_OF_ACTIVE_STATE)
# Torn down or denied: nothing exists, the name is free again, lists hide them by default.
GONE_STATES = frozenset({S.DELETED, S.DENIED})
NAME_HOLDING_STATES = frozenset(IndexState.values) - GONE_STATES
# The index has resources whose certificate and health mean something.
CHECKED_STATES = frozenset({S.PROVISIONING, S.READY, S.RESTARTING, S.FAILED})
# Serving packages: uploads and mirror runs are accepted (a restart in progress picks them up next).
SERVING_STATES = frozenset({S.READY, S.RESTARTING})
# Azure bills the storage account and container group from creation until teardown ends.
BILLED_STATES = CHECKED_STATES | {S.DELETING}
# What a team lead may ask for in each state.
RESTARTABLE_STATES = frozenset({S.READY})
DELETABLE_STATES = frozenset({S.READY, S.FAILED})
RETRYABLE_STATES = frozenset({S.FAILED})


def _state_in(states: Collection[str], doc: str = "") -> property:
    """A property that is true while the index is in one of `states`."""
    return property(lambda index: index.state in states, doc=doc)


class InvalidTransition(Exception):
    pass


class PrivateIndexQuerySet(models.QuerySet):
    def visible_to(self, user) -> PrivateIndexQuerySet:
        if not user.is_authenticated:
            return self.none()
        if is_portal_admin(user):
            return self
        return self.filter(team__memberships__user=user)

    def holding_name(self, name: str) -> PrivateIndexQuerySet:
        return self.filter(name=name, state__in=NAME_HOLDING_STATES)

    def existing(self) -> PrivateIndexQuerySet:
        """Not torn down or denied."""
        return self.exclude(state__in=GONE_STATES)

    def checked(self) -> PrivateIndexQuerySet:
        return self.filter(state__in=CHECKED_STATES)

    def serving(self) -> PrivateIndexQuerySet:
        return self.filter(state__in=SERVING_STATES)

    def active(self) -> PrivateIndexQuerySet:
        return self.filter(state__in=ACTIVE_STATES)


class PrivateIndex(models.Model):
    name = models.CharField(max_length=63, validators=[validate_index_name])
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="indexes")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="requested_indexes"
    )
    size = models.CharField(max_length=16, default="small")
    state = models.CharField(max_length=24, choices=IndexState.choices, default=IndexState.REQUESTED)
    # Driver-owned placement (host name, ports, resource names); never secrets.
    deployment = models.JSONField(default=dict, blank=True)
    url = models.URLField(blank=True, default="")
    failed_operation = models.CharField(max_length=16, blank=True, default="")
    failed_step = models.CharField(max_length=64, blank=True, default="")
    error = models.TextField(blank=True, default="")
    # Approval, when INDEX_APPROVAL_REQUIRED is on.
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = PrivateIndexQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["name"],
                condition=~Q(state__in=sorted(GONE_STATES)),
                name="index_name_unique_while_it_exists",
            )
        ]
        indexes = [models.Index(fields=["state"]), models.Index(fields=["team", "state"])]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("index_detail", args=[self.pk])

    @property
    def upload_url(self) -> str:
        """Where twine, `uv publish` and `poetry publish` send files: the portal, never the index."""
        return settings.PORTAL_BASE_URL.rstrip("/") + reverse("packages_legacy_upload", args=[self.pk])

    # --- state
    def can_transition_to(self, state: str) -> bool:
        return state in TRANSITIONS[self.state]

    def transition_to(self, state: str, **fields) -> None:
        """Move to `state` (saving it with `fields`), or raise InvalidTransition."""
        if not self.can_transition_to(state):
            raise InvalidTransition(f"An index cannot go from {self.state} to {state}.")
        self.state = state
        for key, value in fields.items():
            setattr(self, key, value)
        self.save(update_fields=["state", "updated_at", *fields])

    # What pages, services and commands ask of an index's state; each answer is one rule above.
    is_active = _state_in(ACTIVE_STATES, "A job is (or should be) working on the index.")
    is_ready = _state_in({S.READY})
    is_failed = _state_in({S.FAILED})
    is_awaiting_approval = _state_in({S.AWAITING_APPROVAL})
    is_denied = _state_in({S.DENIED})
    is_deleted = _state_in({S.DELETED})
    is_gone = _state_in(GONE_STATES, "Torn down or denied: nothing runs, so nothing live is shown or checked.")
    is_serving = _state_in(SERVING_STATES, "Uploads and mirror runs are accepted (a restart picks them up next).")
    can_restart = _state_in(RESTARTABLE_STATES)
    can_retry = _state_in(RETRYABLE_STATES)
    can_delete = _state_in(DELETABLE_STATES)

    @property
    def is_checkable(self) -> bool:
        """Built and not torn down: its certificate, health and files can be checked and shown."""
        return bool(self.deployment) and self.state in CHECKED_STATES

    @property
    def retry_operation(self) -> str:
        """A retry resumes what failed: a failed teardown resumes teardown, anything else builds."""
        if self.failed_operation == IndexOperation.TEARDOWN:
            return IndexOperation.TEARDOWN
        return IndexOperation.PROVISION

    # --- who may do what
    def role_of(self, user) -> str | None:
        """The user's role on this index's team ('lead' for admins), or None."""
        if not user.is_authenticated:
            return None
        if is_portal_admin(user):
            return Membership.Role.LEAD
        # Asked several times per page (can_view, can_publish, can_manage): one query per user.
        cache = self.__dict__.setdefault("_roles", {})
        if user.pk not in cache:
            cache[user.pk] = (
                Membership.objects.filter(user=user, team_id=self.team_id).values_list("role", flat=True).first()
            )
        return cache[user.pk]

    def _has_role(self, user, role: str) -> bool:
        held = self.role_of(user)
        return held is not None and ROLE_RANK[held] >= ROLE_RANK[role]

    def can_view(self, user) -> bool:
        return self._has_role(user, Membership.Role.MEMBER)

    def can_publish(self, user) -> bool:
        return self._has_role(user, Membership.Role.PUBLISHER)

    def can_manage(self, user) -> bool:
        return self._has_role(user, Membership.Role.LEAD)


def index_spec(index: PrivateIndex) -> IndexSpec:
    """The IndexSpec of a recorded index, which every driver call about it starts from (the index
    has a placement: reserved at the start of provisioning)."""
    return build_index_spec(
        index_id=index.pk,
        name=index.name,
        team=index.team.slug,
        size=index.size,
        # A copy: drivers record what the cloud decided in placement.resources (see _save_placement).
        placement=Placement.from_dict(copy.deepcopy(index.deployment)),
        upload_url=index.upload_url,
    )


class ProvisioningStep(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    index = models.ForeignKey(PrivateIndex, on_delete=models.CASCADE, related_name="steps")
    operation = models.CharField(max_length=16, choices=IndexOperation.choices)
    position = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=64)
    label = models.CharField(max_length=200)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["operation", "position"]
        constraints = [
            models.UniqueConstraint(fields=["index", "operation", "name"], name="one_step_per_name"),
        ]

    def __str__(self) -> str:
        return f"{self.index} {self.operation}/{self.name}: {self.state}"

    @property
    def is_retrying(self) -> bool:
        """Running, with the note of a failed attempt: the runner waits to try it again."""
        return self.state == self.State.RUNNING and bool(self.error)

    @property
    def duration_seconds(self) -> float | None:
        if not self.started_at:
            return None
        end = self.finished_at or timezone.now()
        return (end - self.started_at).total_seconds()


class IndexCredential(models.Model):
    """A named token for an index. Only the htpasswd hash is kept; the password is shown once."""

    class Kind(models.TextChoices):
        READ = "read", "Read (list and download)"
        PUBLISH = "publish", "Publish (also upload)"

    index = models.ForeignKey(PrivateIndex, on_delete=models.CASCADE, related_name="credentials")
    label = models.CharField(max_length=100)
    username = models.CharField(max_length=64)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    password_hash = models.CharField(max_length=200)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["index", "username"], name="credential_username_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.username} ({self.kind}) on {self.index}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class CertificateStatus(models.TextChoices):
    VALID = "valid", "Valid"
    EXPIRING = "expiring", "Expiring"
    EXPIRED = "expired", "Expired"
    NOT_YET_VALID = "not_yet_valid", "Not yet valid"
    UNTRUSTED = "untrusted", "Untrusted"
    WRONG_HOST = "wrong_host", "Wrong host"
    UNREACHABLE = "unreachable", "Unreachable"
    NO_TLS = "no_tls", "No TLS"
    NOT_ISSUED = "not_issued", "Not issued yet"


# Statuses that need an admin's attention (the dashboard's banner and "problem" filter).
# NOT_ISSUED is not among them: it is what an index shows while it is still being built.
PROBLEM_STATUSES = frozenset(CertificateStatus) - {CertificateStatus.VALID, CertificateStatus.NOT_ISSUED}


class CertificateCheck(models.Model):
    """One check of an index: the certificate it presents on its HTTPS port, whether Caddy's
    certificate files are on the caddy-certs share, its containers' health and its package share's
    use at that moment. The last CERT_CHECK_HISTORY checks per index are kept."""

    index = models.ForeignKey(PrivateIndex, on_delete=models.CASCADE, related_name="certificate_checks")
    checked_at = models.DateTimeField(default=timezone.now)
    host = models.CharField(max_length=255, blank=True, default="")
    port = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=CertificateStatus.choices)
    reason = models.TextField(blank=True, default="")
    elapsed_ms = models.PositiveIntegerField(default=0)
    # The leaf as read with verification off (empty when none was presented).
    issuer = models.TextField(blank=True, default="")
    subject = models.TextField(blank=True, default="")  # empty for Caddy's internal leaves
    sans = models.JSONField(default=list, blank=True)
    not_before = models.DateTimeField(null=True, blank=True)
    not_after = models.DateTimeField(null=True, blank=True)
    key_type = models.CharField(max_length=32, blank=True, default="")
    serial = models.CharField(max_length=64, blank=True, default="")
    sha256 = models.CharField(max_length=64, blank=True, default="")
    trusted = models.BooleanField(null=True)
    hostname_match = models.BooleanField(null=True)
    # Caddy's certificate files on the caddy-certs share: present means a restart reuses them.
    certificates_persisted = models.BooleanField(null=True)
    certificate_files = models.JSONField(default=list, blank=True)
    # Container health from driver.status().
    container_state = models.CharField(max_length=16, blank=True, default="")
    containers = models.JSONField(default=list, blank=True)
    restart_count = models.PositiveIntegerField(default=0)
    last_event = models.TextField(blank=True, default="")
    # The package share, from driver.list_files (None when it could not be read).
    package_count = models.PositiveIntegerField(null=True, blank=True)
    storage_bytes = models.BigIntegerField(null=True, blank=True)
    last_upload_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-checked_at", "-id"]
        indexes = [models.Index(fields=["index", "-checked_at"])]

    def __str__(self) -> str:
        return f"{self.index_id} {self.status} at {self.checked_at:%Y-%m-%d %H:%M}"

    @property
    def days_left(self) -> int | None:
        if self.not_after is None:
            return None
        return (self.not_after - timezone.now()).days

    @property
    def is_problem(self) -> bool:
        return self.status in PROBLEM_STATUSES


class IndexHealth(models.Model):
    """Points at each index's latest check, so the dashboard joins one row per index instead of
    searching the history (one query for a page, whatever the number of indexes)."""

    index = models.OneToOneField(PrivateIndex, on_delete=models.CASCADE, primary_key=True, related_name="health")
    latest = models.OneToOneField(CertificateCheck, on_delete=models.CASCADE, related_name="+")
    # Copied from the latest check so filters, sorts and the banner use an indexed column.
    cert_status = models.CharField(max_length=16, choices=CertificateStatus.choices, db_index=True)
    cert_not_after = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.index_id}: {self.cert_status}"
