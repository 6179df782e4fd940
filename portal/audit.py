"""Recording audit events: one call from services and views."""

from __future__ import annotations

import logging

from django.db import models
from django.http import HttpRequest

from portal.models import AuditEvent

logger = logging.getLogger("portal.audit")

# Keys never written to the log, whatever a caller passes.
_SECRET_KEYS = {"password", "secret", "token", "key", "account_key", "code", "id_token"}


def client_ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def audit_record(
    *,
    action: str,
    actor=None,
    obj: models.Model | None = None,
    request: HttpRequest | None = None,
    details: dict | None = None,
) -> AuditEvent:
    """Append one event. `actor` defaults to the request's user; system actions have none."""
    if actor is None and request is not None and request.user.is_authenticated:
        actor = request.user
    if actor is not None and not actor.is_authenticated:
        actor = None
    clean = {k: v for k, v in (details or {}).items() if k.lower() not in _SECRET_KEYS}
    event = AuditEvent.objects.create(
        action=action,
        actor=actor,
        actor_name=actor.get_username() if actor else "",
        object_type=obj._meta.label_lower if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        object_repr=str(obj)[:200] if obj is not None else "",
        source_ip=client_ip(request),
        details=clean,
    )
    logger.info("audit %s by %s on %s", action, event.actor_name or "system", event.object_repr)
    return event
