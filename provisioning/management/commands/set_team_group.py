"""Map a team to its Entra group from automation: `manage.py set_team_group SLUG GROUP_OBJECT_ID`."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from provisioning import services
from provisioning.models import Team


class Command(BaseCommand):
    help = "Set the Entra group object id whose members belong to a team (--create makes the team)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("team", help="the team's slug")
        parser.add_argument("group_id", help="the Entra group's object id (a GUID); '' removes the mapping")
        parser.add_argument("--create", metavar="NAME", help="create the team with this display name if missing")

    def handle(self, *args, **options) -> None:
        team = Team.objects.filter(slug=options["team"]).first()
        if team is None and options["create"]:
            team = Team.objects.create(name=options["create"], slug=options["team"])
            self.stdout.write(f"Created team {team.name} ({team.slug}).")
        if team is None:
            slugs = ", ".join(Team.objects.values_list("slug", flat=True)) or "none yet"
            raise CommandError(f"No team with slug {options['team']!r} (teams: {slugs}); add --create NAME.")
        try:
            changed = services.team_set_entra_group(team=team, group_id=options["group_id"])
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        group = team.entra_group_id or "no group"
        self.stdout.write(f"Team {team.slug} {'is now mapped to' if changed else 'was already mapped to'} {group}.")
