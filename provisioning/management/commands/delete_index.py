from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from provisioning import services
from provisioning.management.commands._wait import wait_for_index
from provisioning.models import InvalidTransition, PrivateIndex


class Command(BaseCommand):
    help = "Tear an index down (containers or processes, then its shares)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--requested-by", default="automation")
        parser.add_argument("--wait", action="store_true")
        parser.add_argument("--timeout", type=float, default=600.0)

    def handle(self, *args, **options) -> None:
        index = PrivateIndex.objects.holding_name(options["name"]).first()
        if index is None:
            raise CommandError(f"No index named {options['name']!r}.")
        user, _ = get_user_model().objects.get_or_create(username=options["requested_by"])
        try:
            services.index_delete(index=index, actor=user)
        except InvalidTransition as exc:
            raise CommandError(str(exc)) from exc
        if options["wait"]:
            index = wait_for_index(index, timeout=options["timeout"])
            if not index.is_deleted:
                raise CommandError(f"Index {index.name} is {index.state}: {index.error or 'timed out waiting'}")
            self.stdout.write(f"{index.name} is deleted.")
        else:
            self.stdout.write(f"Tearing down {index.name}.")
