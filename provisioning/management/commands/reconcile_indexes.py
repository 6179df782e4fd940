from __future__ import annotations

from django.core.management.base import BaseCommand

from provisioning import services


class Command(BaseCommand):
    help = "Re-enqueue stuck indexes and bring ready indexes back up (run at start-up)."

    def handle(self, *args, **options) -> None:
        counts = services.index_reconcile()
        self.stdout.write(", ".join(f"{key}: {value}" for key, value in counts.items()))
