"""Request an index from a script: `manage.py create_index --team data-platform --name ml --wait --json`."""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.dependencies import REDIS_ERRORS, outage_message
from provisioning import services
from provisioning.management.commands._wait import wait_for_index
from provisioning.models import IndexCredential, PrivateIndex, Team


class Command(BaseCommand):
    help = "Request a private index; with --wait, block until it is ready or failed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--team", required=True, help="Team slug (created if --create-team).")
        parser.add_argument("--name", required=True)
        parser.add_argument("--size", default=settings.INDEX_DEFAULT_SIZE, choices=sorted(settings.INDEX_SIZES))
        parser.add_argument("--requested-by", default="automation", help="User name recorded as requester.")
        parser.add_argument("--create-team", action="store_true", help="Create the team if it does not exist.")
        parser.add_argument("--wait", action="store_true", help="Wait until the index is ready or failed.")
        parser.add_argument("--timeout", type=float, default=600.0)
        parser.add_argument("--json", action="store_true", help="Print the URLs, CA path and new credentials as JSON.")
        parser.add_argument("--ca-dir", default=str(settings.VAR_DIR / "ca"), help="Where to write the CA file.")

    def handle(self, *args, **options) -> None:
        if options["create_team"]:
            team, _ = Team.objects.get_or_create(slug=options["team"], defaults={"name": options["team"]})
        else:
            team = Team.objects.filter(slug=options["team"]).first()
            if team is None:
                slugs = ", ".join(Team.objects.values_list("slug", flat=True)) or "none yet"
                raise CommandError(f"No team {options['team']!r} (teams: {slugs}; --create-team creates it).")
        user, _ = get_user_model().objects.get_or_create(username=options["requested_by"])
        try:
            index = services.index_request(team=team, name=options["name"], size=options["size"], requested_by=user)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        except REDIS_ERRORS as exc:
            recorded = PrivateIndex.objects.holding_name(options["name"]).exists()
            raise CommandError(
                f"{outage_message(exc)} "
                + (
                    "The index is recorded; the reconcile queues it once Redis is back."
                    if recorded
                    else "Nothing was created."
                )
            ) from exc
        if not options["wait"] and not options["json"]:
            self.stdout.write(f"Requested {index.name} (id {index.pk}); state {index.state}.")
            return
        index = wait_for_index(index, timeout=options["timeout"])
        if not index.is_ready:
            raise CommandError(
                f"Index {index.name} is {index.state}"
                + (f": step {index.failed_step} failed: {index.error}" if index.error else " (timed out waiting)")
            )
        result: dict = {
            "name": index.name, "id": index.pk, "url": index.url, "upload_url": index.upload_url, "state": index.state,
        }  # fmt: skip
        if options["json"]:
            pem = services.index_ca_pem(index)
            if pem:
                ca_path = Path(options["ca_dir"]) / f"{index.name}-ca.pem"
                ca_path.parent.mkdir(parents=True, exist_ok=True)
                ca_path.write_text(pem)
                result["ca_path"] = str(ca_path)
            result["credentials"] = {}
            for kind in (IndexCredential.Kind.READ, IndexCredential.Kind.PUBLISH):
                credential, password = services.credential_create(
                    index=index, kind=kind, label=f"{kind} (create_index)", actor=user
                )
                result["credentials"][kind] = {"username": credential.username, "password": password}
            self.stdout.write(json.dumps(result, indent=2))
        else:
            self.stdout.write(f"{index.name} is ready at {index.url}; publish to {index.upload_url}")
