"""How the audit log reads: a name for each recorded action, for each kind of object, and for
detail keys. Codes stay the stored values (filters and exports use them); people see these."""

from __future__ import annotations

import re

from django.urls import NoReverseMatch, reverse

ACTION_LABELS = {
    "auth.signed_in": "Signed in",
    "auth.signed_out": "Signed out",
    "auth.sign_in_failed": "Sign-in failed",
    "credential.created": "Created a token for",
    "credential.revoked": "Revoked a token of",
    "index.requested": "Requested",
    "index.approved": "Approved",
    "index.denied": "Denied",
    "index.provisioned": "Finished building",
    "index.provision_failed": "Building failed for",
    "index.retried": "Retried",
    "index.restart_requested": "Asked to restart",
    "index.restarted": "Restarted",
    "index.restart_failed": "Restart failed for",
    "index.delete_requested": "Asked to tear down",
    "index.deleted": "Tore down",
    "index.teardown_failed": "Teardown failed for",
    "index.revived": "Brought back",
    "package.stored": "Uploaded a package to",
    "package.deleted": "Deleted a package from",
    "package.adopted": "Adopted a file found on the share of",
    "package.unrecorded_removed": "Removed a file the portal did not write from",
    "package.yanked": "Yanked packages of",
    "package.unyanked": "Un-yanked packages of",
    "packages.resynced": "Checked the share and adopted files of",
    "packages.refresh_requested": "Asked to refresh",
    "packages.refreshed": "Made new packages live on",
    "packages.refresh_failed": "Refreshing failed for",
    "packages.integrity_problems": "Found files to check on the share of",
    "packages.metadata_backfilled": "Backfilled metadata files of",
    "packages.mirror_requested": "Asked to mirror from PyPI into",
    "packages.mirror_failed": "Mirror from PyPI failed for",
    "rq.job_requeued": "Requeued a failed job",
    "team.group_changed": "Changed the Entra group of",
}

# object_type (app_label.model) -> (what people call it, the URL name of its page)
OBJECT_TYPES = {
    "provisioning.privateindex": ("index", "index_detail"),
    "provisioning.team": ("team", "admin:provisioning_team_change"),
    "auth.user": ("user", "admin:auth_user_change"),
}

DETAIL_LABELS = {"sha256": "SHA-256", "url": "URL", "run": "mirror run", "python": "Python"}
HASH_RE = re.compile(r"[0-9a-f]{40,128}")
SHORT_HASH = 12


def action_label(code: str) -> str:
    """A name for a recorded action; unknown codes read as words ("x.some_thing" → "x some thing")."""
    return ACTION_LABELS.get(code) or code.replace(".", " ").replace("_", " ").capitalize()


def object_type_label(object_type: str) -> str:
    return OBJECT_TYPES.get(object_type, (object_type.rpartition(".")[2], None))[0]


def object_url(object_type: str, object_id: str, action: str = "") -> str | None:
    """The page of the object an event is about, when it has one."""
    url_name = OBJECT_TYPES.get(object_type, ("", None))[1]
    if url_name is None or not object_id.isdigit():
        return None
    if object_type == "provisioning.privateindex" and action.startswith("package"):
        url_name = "packages"  # package events: straight to the index's Packages tab
    try:
        return reverse(url_name, args=[int(object_id)])
    except NoReverseMatch:
        return None


def detail_label(key: str) -> str:
    return DETAIL_LABELS.get(key, key.replace("_", " "))


def detail_text(value: object) -> tuple[str, str]:
    """(what is shown, the full value for a tooltip): lists as commas, hashes shortened."""
    if isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, list | tuple):
        text = ", ".join(str(item) for item in value) or "none"
    elif isinstance(value, dict):
        text = ", ".join(f"{detail_label(str(k))} {v}" for k, v in value.items()) or "none"
    elif value is None or value == "":
        text = "none"
    else:
        text = str(value)
    if HASH_RE.fullmatch(text):
        return f"{text[:SHORT_HASH]}…", text
    return text, text
