"""List an index's files for scripts: `manage.py list_packages INDEX --json` (INDEX: name or id)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.template.defaultfilters import filesizeformat

from packages_ui.models import PackageFile
from portal.models import AuditEvent
from provisioning.models import PrivateIndex


def index_by_name_or_id(value: str) -> PrivateIndex:
    """The index holding that name (else the latest of that name), or with that id. Raises CommandError."""
    index = (
        PrivateIndex.objects.holding_name(value).first()
        or PrivateIndex.objects.filter(name=value).order_by("-pk").first()
    )
    if index is None and value.isdigit():
        index = PrivateIndex.objects.filter(pk=int(value)).first()
    if index is None:
        raise CommandError(f"No index named or numbered {value!r}.")
    return index


def upload_tokens(index: PrivateIndex) -> dict[str, str]:
    """{file name: label of the token it was uploaded with}, from the audit log (API uploads)."""
    events = AuditEvent.objects.filter(
        object_type=PrivateIndex._meta.label_lower, object_id=str(index.pk),
        action__in=["package.stored", "package.overwritten"], details__has_key="token_label",
    ).order_by("at", "pk")  # fmt: skip
    return {e.details["filename"]: e.details["token_label"] for e in events}


def package_rows(index: PrivateIndex) -> list[dict]:
    tokens = upload_tokens(index)
    rows = []
    for package in (
        PackageFile.objects.filter(index=index).select_related("uploaded_by").order_by("project", "filename")
    ):
        token = tokens.get(package.filename)
        user = package.uploaded_by.get_username() if package.uploaded_by else None
        rows.append({
            "project": package.project, "version": package.version, "filename": package.filename,
            "size": package.size, "sha256": package.sha256, "state": package.state,
            "uploaded_by": user or token or "", "token": token, "source": package.source,
            "uploaded_at": package.uploaded_at.isoformat(),
        })  # fmt: skip
    return rows


class Command(BaseCommand):
    help = "List every file of an index: project, version, file name, size, sha256, state and uploader."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("index", help="The index's name or id.")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options) -> None:
        index = index_by_name_or_id(options["index"])
        rows = package_rows(index)
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if not rows:
            self.stdout.write(f"No files on {index.name}.")
            return
        line = "{:<24} {:<12} {:<48} {:>10} {:<7} {:<19} {:<24} {}"
        self.stdout.write(line.format("PROJECT", "VERSION", "FILE", "SIZE", "STATE", "UPLOADED", "BY", "SHA256"))
        for row in rows:
            by = row["uploaded_by"] or "-"
            if row["token"] and row["token"] != by:
                by += f" (token {row['token']})"
            size = filesizeformat(row["size"]).replace("\xa0", " ")
            self.stdout.write(
                line.format(
                    row["project"], row["version"], row["filename"], size, row["state"],
                    row["uploaded_at"][:19].replace("T", " "), by, row["sha256"],
                ).rstrip()
            )  # fmt: skip
