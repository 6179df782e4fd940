from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandParser

from provisioning.models import PrivateIndex


class Command(BaseCommand):
    help = "List indexes (all but deleted ones unless --all)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--all", action="store_true", help="Include deleted and denied indexes.")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options) -> None:
        indexes = PrivateIndex.objects.select_related("team").order_by("team__slug", "name")
        if not options["all"]:
            indexes = indexes.existing()
        rows = [
            {"id": i.pk, "name": i.name, "team": i.team.slug, "state": i.state, "url": i.url, "error": i.error}
            for i in indexes
        ]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        for row in rows:
            line = f"{row['id']:>5}  {row['team']:<20} {row['name']:<30} {row['state']:<18} {row['url']}"
            self.stdout.write(line.rstrip() + (f"  ({row['error']})" if row["error"] else ""))
