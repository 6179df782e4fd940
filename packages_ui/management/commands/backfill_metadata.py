"""Give wheels uploaded before PEP 658 support their metadata files:
`manage.py backfill_metadata [INDEX ...] [--json]` (no INDEX: every index that accepts packages)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from packages_ui.management.commands.list_packages import index_by_name_or_id
from packages_ui.models import PackageFile
from packages_ui.services import packages_backfill_metadata
from provisioning.models import PrivateIndex


def indexes_to_backfill() -> list[PrivateIndex]:
    """Indexes that accept packages and hold a present wheel without a metadata file."""
    ids = (
        PackageFile.objects.present()
        .filter(kind="wheel", metadata_sha256="")
        .values_list("index_id", flat=True)
        .distinct()
    )
    return [index for index in PrivateIndex.objects.filter(pk__in=ids).order_by("pk") if index.is_serving]


class Command(BaseCommand):
    help = "Write the metadata file (PEP 658) of every wheel recorded without one, then refresh each index once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("indexes", nargs="*", metavar="INDEX", help="Names or ids; default: every index.")
        parser.add_argument("--json", action="store_true", help="Print the counts as JSON.")

    def handle(self, *args, **options) -> None:
        names = options["indexes"]
        indexes = [index_by_name_or_id(name) for name in names] if names else indexes_to_backfill()
        reports = [packages_backfill_metadata(index=index) for index in indexes]
        if options["json"]:
            self.stdout.write(json.dumps([r.as_dict() for r in reports], indent=2))
            return
        if not reports:
            self.stdout.write("Every wheel has its metadata file.")
        for report in reports:
            written, failed = len(report.written), len(report.failed)
            self.stdout.write(f"{report.index}: {written} metadata file(s) written, {failed} failed.")
            for filename, error in report.failed.items():
                self.stderr.write(f"  {filename}: {error}")
        if failed := sum(len(r.failed) for r in reports):
            raise CommandError(f"{failed} wheel(s) could not be given a metadata file.")
