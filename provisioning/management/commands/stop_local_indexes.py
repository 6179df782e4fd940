from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from provisioning import services
from provisioning.drivers.backend import get_runtime
from provisioning.drivers.local_runtime import LocalRuntime
from provisioning.models import PrivateIndex


class Command(BaseCommand):
    help = "Stop the local driver's processes (shares kept); reconcile_indexes brings them back."

    def handle(self, *args, **options) -> None:
        runtime = get_runtime()
        if not isinstance(runtime, LocalRuntime):
            raise CommandError("Only the local driver runs processes on this machine.")
        stopped = 0
        for index in PrivateIndex.objects.existing().exclude(deployment={}):
            runtime.halt(services.index_spec(index))
            stopped += 1
        # Processes no index row accounts for (a deleted index's orphan, a killed worker's).
        orphans = runtime.stop_everything()
        self.stdout.write(
            f"Stopped the processes of {stopped} index(es)" + (f" and {orphans} orphan(s)." if orphans else ".")
        )
