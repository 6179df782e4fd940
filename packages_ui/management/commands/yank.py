"""Yank or un-yank a release: `manage.py yank INDEX PROJECT VERSION --reason TEXT [--undo] [--json]`."""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from packages_ui.management.commands.list_packages import index_by_name_or_id
from packages_ui.services import package_yank


class Command(BaseCommand):
    help = "Yank (PEP 592) every file of a release, or un-yank it with --undo; pip and uv then skip it unless pinned."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("index", help="The index's name or id.")
        parser.add_argument("project")
        parser.add_argument("version")
        parser.add_argument("--reason", default="", help="Shown by pip and uv when the release is installed pinned.")
        parser.add_argument("--undo", action="store_true", help="Un-yank the release.")
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args, **options) -> None:
        index = index_by_name_or_id(options["index"])
        try:
            result = package_yank(
                index=index, project=options["project"], version=options["version"], reason=options["reason"],
                undo=options["undo"], actor=None,
            )  # fmt: skip
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
            return
        state = "yanked" if result.yanked else "not yanked"
        if result.yanked and result.reason:
            state += f" ({result.reason})"
        self.stdout.write(
            f"{result.project} {result.version} on {result.index}: {state}; {len(result.files)} file(s), "
            f"{len(result.changed)} changed. The index serves it after the queued refresh."
        )
