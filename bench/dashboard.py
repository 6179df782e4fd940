"""Dashboard render time and SQL query count for 100, 1,000 and 5,000 indexes; print figures.

Runs against a throwaway test database (`test_<name>` from DATABASE_URL, created and dropped
here), fills it in bulk and times full-page GETs of /admin/dashboard/ through Django's test client
(middleware, template rendering and all), for the default view and a filtered, sorted one.

    DATABASE_URL=postgres://... .venv/bin/python bench/dashboard.py [--sizes 100,1000,5000] [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("DEBUG", "1")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import Group, User  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_databases, teardown_databases  # noqa: E402

from portal.permissions import ADMIN_GROUP  # noqa: E402
from provisioning.models import PrivateIndex  # noqa: E402
from tests.dashboard_support import make_fleet  # noqa: E402

VIEWS = {
    "default": "/admin/dashboard/",
    "problems, by cost": "/admin/dashboard/?cert=problem&sort=-cost",
    "search, page 2": "/admin/dashboard/?q=bench&sort=team&page=2",
    "by storage used": "/admin/dashboard/?sort=-storage",
}


def measure(client: Client, url: str, runs: int) -> tuple[float, float, int, int]:
    client.get(url)  # warm: template loading, connection
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    return statistics.median(times), max(times), len(queries), len(response.content)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    # Not setup_test_environment(): its instrumented template rendering (a context copy per
    # template for the test client's signals) would be timed too; production has none of it.
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    old_config = setup_databases(verbosity=0, interactive=False)
    try:
        admin = User.objects.create_user("bench-admin")
        admin.groups.add(Group.objects.get_or_create(name=ADMIN_GROUP)[0])
        client = Client()
        client.force_login(admin)
        print(f"database: {connection.vendor} {connection.settings_dict['NAME']}; {args.runs} runs per figure")
        print(f"{'indexes':>8}  {'view':<18} {'median ms':>9} {'max ms':>7} {'queries':>7} {'page KB':>7}")
        made = 0
        for size in sizes:
            started = time.perf_counter()
            make_fleet(size - made, prefix=f"bench{size}")
            made = size
            fill = time.perf_counter() - started
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE") if connection.vendor == "postgresql" else None
            assert PrivateIndex.objects.count() == size
            for name, url in VIEWS.items():
                median, worst, queries, size_bytes = measure(client, url, args.runs)
                print(f"{size:>8}  {name:<18} {median:>9.1f} {worst:>7.1f} {queries:>7} {size_bytes / 1024:>7.0f}")
            print(f"{'':>8}  (fleet filled in {fill:.1f} s)")
    finally:
        teardown_databases(old_config, verbosity=0)


if __name__ == "__main__":
    main()
