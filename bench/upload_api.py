"""Upload API figures: a big wheel with the real twine CLI through the portal's upload URL, beside
twine straight to a plain pypiserver (no portal, no auth) in the same run.

    .venv/bin/python bench/upload_api.py [--megabytes 500] [--runs 3]

The portal runs under gunicorn (one sync worker, as deployed) in front of an index built by the
local driver; the upload is validated and written to the index's share exactly as in production.
The plain pypiserver is started here on its own folder with waitress, as the local driver runs it.
Prints, medians of N with os.sync() before each run:
- twine → upload URL and twine → plain pypiserver: seconds and MiB/s, and their ratio;
- the gunicorn worker's RSS before the first upload and its peak (VmHWM) after the last.
Target (issue 9): memory bounded (growth < 64 MiB whatever the file size). Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.upload import MB, Portal, free_port, rss_kb  # noqa: E402

TWINE = Path(sys.executable).parent / "twine"


def twine_upload(url: str, username: str, password: str, path: Path, env: dict[str, str]) -> float:
    """Seconds for one `twine upload`; exits with twine's output if it fails."""
    start = time.perf_counter()
    completed = subprocess.run(
        [str(TWINE), "upload", "--non-interactive", "--disable-progress-bar", "--repository-url", url,
         "-u", username, "-p", password, str(path)],
        capture_output=True, text=True, env=env, timeout=1800,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"twine to {url} failed:\n{completed.stdout}{completed.stderr}")
    return elapsed


def plain_pypiserver(folder: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """pypiserver on `folder` with uploads open to anyone (`-a . -P .`), as a peer would run it."""
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "pypi-server"), "run", "--interface", "127.0.0.1", "--port", str(port),
         "-a", ".", "-P", ".", "--disable-fallback", "--server", "auto", str(folder)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return process, url
        except OSError:  # URLError and connection errors while it starts
            time.sleep(0.1)
    raise SystemExit("the plain pypiserver did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-upload-api-"))
    os.environ.update(
        DEBUG="1",
        DATABASE_URL=f"sqlite:///{work / 'bench.sqlite3'}",
        PORTAL_VAR_DIR=str(work),
        LOCAL_DRIVER_DATA_DIR=str(work / "indexes"),
        FILE_UPLOAD_TEMP_DIR=str(work / "receiving"),
        PACKAGES_MAX_UPLOAD_BYTES=str((args.megabytes + 64) * MB),
        REDIS_URL=os.environ.get("BENCH_REDIS_URL", os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")),
        DJANGO_SETTINGS_MODULE="portal.settings",
        ALLOWED_HOSTS="testserver,127.0.0.1,localhost",
    )
    (work / "receiving").mkdir()
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from packages_ui.models import PackageFile
    from packages_ui.testing import build_wheel
    from provisioning import services
    from provisioning.drivers.base import get_driver
    from provisioning.models import Membership, PrivateIndex, Team
    from provisioning.services import index_spec
    from provisioning.spec import SHARE_PACKAGES

    call_command("migrate", verbosity=0)
    user = User.objects.create_user("bench-publisher")
    team = Team.objects.create(name="Bench", slug="bench")
    Membership.objects.create(user=user, team=team, role="lead")
    index = PrivateIndex.objects.create(name="bench-upload-api", team=team, requested_by=user)
    services.index_provision_perform(index.pk)
    index.refresh_from_db()
    if index.state != "ready":
        raise SystemExit(f"The index did not build: {index.error}")
    credential, password = services.credential_create(index=index, kind="publish", label="bench", actor=user)
    env = {k: v for k, v in os.environ.items() if k not in {"REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"}}
    portal = Portal(env, session="")
    upload_url = f"http://127.0.0.1:{portal.port}/indexes/{index.pk}/packages/legacy/"
    plain_dir = work / "plain-packages"
    plain_dir.mkdir()
    plain, plain_url = plain_pypiserver(plain_dir, env)
    try:
        print(f"Building a {args.megabytes} MiB wheel ...", flush=True)
        big = build_wheel(work, "bench-api", "1.0", payload_bytes=args.megabytes * MB)
        size = big.stat().st_size
        before = rss_kb(portal.worker_pid)
        portal_times, plain_times = [], []
        for _ in range(args.runs):
            PackageFile.objects.filter(filename=big.name).delete()
            get_driver().delete_file(index_spec(index), SHARE_PACKAGES, big.name)
            os.sync()
            portal_times.append(twine_upload(upload_url, credential.username, password, big, env))
            (plain_dir / big.name).unlink(missing_ok=True)
            os.sync()
            plain_times.append(twine_upload(plain_url, "anyone", "anything", big, env))
        peak = rss_kb(portal.worker_pid, "VmHWM")
        portal_med, plain_med = statistics.median(portal_times), statistics.median(plain_times)
        print(f"\ntwine upload of a {size / MB:.0f} MiB wheel, medians of {args.runs} (os.sync() before each):")
        print(
            f"  -> portal upload URL (validated, recorded) : {portal_med:6.2f} s  {size / MB / portal_med:6.0f} MiB/s"
            f"  (runs: {', '.join(f'{t:.2f}' for t in portal_times)})"
        )
        print(
            f"  -> plain pypiserver, no auth (the peer)   : {plain_med:6.2f} s  {size / MB / plain_med:6.0f} MiB/s"
            f"  (runs: {', '.join(f'{t:.2f}' for t in plain_times)})"
        )
        print(f"  ratio portal / plain time                 : {portal_med / plain_med:.2f}")
        print(
            f"  gunicorn worker RSS                       : {before / 1024:.1f} MiB before, peak {peak / 1024:.1f}"
            f" MiB -> growth {(peak - before) / 1024:.1f} MiB"
        )
    finally:
        portal.stop()
        os.killpg(plain.pid, 15)
        plain.wait(timeout=30)
        index.refresh_from_db()
        services.index_delete(index=index, actor=user)
        services.index_teardown_perform(index.pk)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
