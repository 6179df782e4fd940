from __future__ import annotations

from django.core.management.base import BaseCommand

from devtools.demo import DEMO_TEAMS
from provisioning.models import Team


class Command(BaseCommand):
    help = "Create the demo teams used by the laptop run (their Entra group ids match the local provider's)."

    def handle(self, *args, **options) -> None:  # noqa: ANN002, ANN003
        for name, slug, group_id in DEMO_TEAMS:
            Team.objects.update_or_create(slug=slug, defaults={"name": name, "entra_group_id": group_id})
        self.stdout.write(f"Demo teams: {', '.join(name for name, _, _ in DEMO_TEAMS)}")
