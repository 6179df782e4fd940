"""The append-only audit log."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from portal import audit_labels


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionError("The audit log is append-only.")

    def delete(self):
        raise PermissionError("The audit log is append-only.")


class AuditEvent(models.Model):
    """Who did what to which object, when and from where. Never updated or deleted."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Kept as text too, so the record survives the user's removal.
    actor_name = models.CharField(max_length=200, blank=True, default="")
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64, blank=True, default="")
    object_id = models.CharField(max_length=64, blank=True, default="")
    object_repr = models.CharField(max_length=200, blank=True, default="")
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name or 'system'} {self.action} {self.object_repr}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise PermissionError("The audit log is append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("The audit log is append-only.")

    # --- how the log reads (portal.audit_labels)
    @property
    def action_label(self) -> str:
        return audit_labels.action_label(self.action)

    @property
    def object_type_label(self) -> str:
        return audit_labels.object_type_label(self.object_type)

    @property
    def object_is_actor(self) -> bool:
        """Sign-ins are recorded on the user who signs in: the sentence names them once."""
        return self.object_type == "auth.user" and self.object_id == str(self.actor_id)

    def object_url(self) -> str | None:
        return audit_labels.object_url(self.object_type, self.object_id, self.action)

    def detail_items(self) -> list[tuple[str, str, str]]:
        """(label, shown text, full text) per detail, in recorded order."""
        return [(audit_labels.detail_label(k), *audit_labels.detail_text(v)) for k, v in self.details.items()]


class EntraIdentity(models.Model):
    """The Entra ID account a portal user signs in with, keyed on (tenant id, object id):
    stable for the account's life, unlike preferred_username or e-mail."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="entra_identity")
    tid = models.CharField("tenant id", max_length=64)
    oid = models.CharField("object id", max_length=64)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_sign_in_at = models.DateTimeField(null=True, blank=True)
    # The app roles and groups of the last sign-in, for admins answering "why can't I see X?".
    roles = models.JSONField(default=list, blank=True)
    groups = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tid", "oid"], name="entra_identity_unique_account")]
        verbose_name_plural = "Entra identities"

    def __str__(self) -> str:
        return f"{self.user} ({self.tid}/{self.oid})"
