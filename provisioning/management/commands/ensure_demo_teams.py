"""`make run`: the demo teams, mapped to the Entra group ids the local provider's users carry."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from provisioning.models import Team


class Command(BaseCommand):
    help = "Create the local sign-in provider's demo teams (DEBUG runs only)."

    def handle(self, *args, **options) -> None:
        if not settings.DEBUG:
            raise CommandError("Demo teams are for DEBUG runs on a laptop only.")
        from devtools.entra_provider.demo import DEMO_TEAMS

        for name, slug, group_id in DEMO_TEAMS:
            team, created = Team.objects.update_or_create(
                slug=slug,
                defaults={"entra_group_id": group_id},
                create_defaults={"name": name, "entra_group_id": group_id},
            )
            self.stdout.write(f"{'created' if created else 'kept'} team {team.name} (group {group_id})")
