"""`manage.py scheduler provisioning.cron`: django-rq's `rqcron`, riding out Redis restarts."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from portal.workers import PortalCronScheduler


class Command(BaseCommand):
    help = "Run the periodic jobs of a cron config module (exactly one scheduler per portal)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("config_path", help="Cron config module, e.g. provisioning.cron")

    def handle(self, *args, **options) -> None:
        scheduler = PortalCronScheduler()
        scheduler.load_config_from_file(options["config_path"])
        self.stdout.write(f"Scheduling {len(scheduler.get_jobs())} periodic jobs.")
        scheduler.start()
