"""Time from the request form's POST to a pip-installable index, per step, median of N runs.

    .venv/bin/python bench/time_to_index.py [--runs 5]

Uses the real stack on this machine: Django test client for the POST, a real RQ worker process
picking up the jobs, the local driver (the index server + Caddy), twine to publish a wheel to the
portal's upload URL (the portal under gunicorn), and pip to download it from the index over
HTTPS with the index's CA once it is live. Needs Redis (REDIS_URL). Prints figures; asserts
nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stack import Portal, clean_env, free_port, start_worker, stop  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-tti-"))
    port = free_port()
    os.environ.update(
        PORTAL_BASE_URL=f"http://127.0.0.1:{port}",
        DEBUG="1",
        DATABASE_URL=f"sqlite:///{work / 'bench.sqlite3'}",
        PORTAL_VAR_DIR=str(work),
        LOCAL_DRIVER_DATA_DIR=str(work / "indexes"),
        REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        DJANGO_SETTINGS_MODULE="portal.settings",
        ALLOWED_HOSTS="testserver,127.0.0.1,localhost",
    )
    import django

    django.setup()
    import django_rq
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    from packages_ui.models import PackageFile
    from provisioning import services
    from provisioning.models import Membership, PrivateIndex, Team
    from tests.builders import build_wheel
    from tests.clients import twine_upload

    call_command("migrate", verbosity=0)
    django_rq.get_connection("default").flushdb()
    from django.contrib.auth.models import User

    user = User.objects.create_user("bench-lead")
    team = Team.objects.create(name="Bench", slug="bench")
    Membership.objects.create(user=user, team=team, role="lead")
    client = Client()
    client.force_login(user)
    worker = start_worker("provisioning", "packages")
    portal = Portal(clean_env(), port)
    totals: list[float] = []
    per_step: dict[str, list[float]] = {}
    try:
        time.sleep(1.5)  # let the worker connect before the clock starts
        for run in range(args.runs):
            name = f"bench-{run}"
            start = time.perf_counter()
            client.post(reverse("index_new"), {"name": name, "team": team.pk, "size": "small"})
            index = PrivateIndex.objects.get(name=name)
            while index.state not in {"ready", "failed"}:
                time.sleep(0.02)
                index.refresh_from_db()
            if index.state == "failed":
                raise SystemExit(f"{name} failed: {index.error}")
            ready = time.perf_counter()
            credential, password = services.credential_create(index=index, kind="publish", label="bench", actor=user)
            ca = work / f"{name}.pem"
            ca.write_text(client.get(reverse("index_ca_certificate", args=[index.pk])).content.decode())
            wheel = build_wheel(work, f"bench-pkg-{run}", "1.0")
            published = twine_upload(
                [wheel], repository_url=index.upload_url, username=credential.username, password=password
            )
            if published.returncode:
                raise SystemExit(published.stdout + published.stderr)
            while not PackageFile.objects.filter(filename=wheel.name, state="live").exists():
                time.sleep(0.02)
            authed = index.url.replace("https://", f"https://{credential.username}:{password}@")
            download = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(work / "dl"), "--index-url", authed,
                 "--cert", str(ca), f"bench-pkg-{run}==1.0"], env=clean_env(), capture_output=True, text=True,
            )  # fmt: skip
            installable = time.perf_counter()
            if download.returncode:
                raise SystemExit(download.stderr)
            totals.append(installable - start)
            per_step.setdefault("form POST → ready", []).append(ready - start)
            per_step.setdefault("ready → twine to the portal, live, pip download", []).append(installable - ready)
            for step in index.steps.all():
                per_step.setdefault(f"  step {step.name}", []).append(step.duration_seconds or 0.0)
        print(f"time to index, median of {args.runs} runs on this machine")
        for label, values in per_step.items():
            print(f"{label:<40} median {statistics.median(values) * 1000:8.1f} ms   max {max(values) * 1000:8.1f} ms")
        print(
            f"{'form POST → uploaded and pip-downloadable':<40} "
            f"median {statistics.median(totals) * 1000:8.1f} ms (target < 3000 ms)"
        )
    finally:
        for index in PrivateIndex.objects.filter(state="ready"):
            services.index_delete(index=index, actor=user)
            services.index_teardown_perform(index.pk)
        portal.stop()
        stop(worker)


if __name__ == "__main__":
    main()
