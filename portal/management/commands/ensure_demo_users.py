from __future__ import annotations

from django.core.management.base import BaseCommand

from devtools.entra_provider.demo import DEMO_GROUPS
from provisioning.models import Team


class Command(BaseCommand):
    help = "Create the demo teams of the laptop run; their Entra group ids are the local provider's."

    def handle(self, *args, **options) -> None:
        for slug, group_id in DEMO_GROUPS.items():
            Team.objects.update_or_create(slug=slug, defaults={"name": slug.title(), "entra_group_id": group_id})
        self.stdout.write(f"Demo teams: {', '.join(slug.title() for slug in DEMO_GROUPS)}")
