"""Publishing figures: a big wheel with twine through the portal's upload URL, beside twine to a
plain pypiserver (the peer), and what a reader of the index sees meanwhile.

    .venv/bin/python bench/upload.py [--megabytes 500] [--runs 3]

Runs the real stack on this machine: the portal under gunicorn (one sync worker, as deployed),
an index built by the local driver (the index server behind Caddy), a real `rqworker packages`
for the refresh jobs, and the real twine. Prints, side by side in the same run:
- twine upload of the same N MiB wheel to the portal's upload URL (received, validated, written,
  recorded) and to a plain `pypi-server` without auth (the peer), medians;
- seconds from the start of the upload until the file is live (refresh + served check);
- the gunicorn worker's RSS growth during the uploads;
- a reader polling /simple/<project>/ through Caddy every 20 ms during the uploads and refreshes:
  requests and failed requests (target: 0 failed).
Asserts nothing.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stack import Portal, clean_env, free_port, rss_kb, start_worker, stop  # noqa: E402

MB = 1024 * 1024
BIN = Path(sys.executable).parent


def twine(url: str, user: str, password: str, path: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "twine"), "upload", "--non-interactive", "--disable-progress-bar", "--repository-url", url,
         "-u", user, "-p", password, str(path)],
        capture_output=True, text=True, env=clean_env(), timeout=1800,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"twine to {url} failed: {done.stdout}{done.stderr}")
    return time.perf_counter() - start


class Reader(threading.Thread):
    """A pip-like reader of one /simple/ page every 20 ms, counting failures, until stopped."""

    def __init__(self, port: int, path: str, auth: str, cafile: str) -> None:
        super().__init__(daemon=True)
        self.port, self.path, self.auth = port, path, auth
        self.context = ssl.create_default_context(cafile=cafile)
        self.stop = threading.Event()
        self.requests = 0
        self.failures: list[str] = []

    def run(self) -> None:
        deadline = time.monotonic() + 3600
        while not self.stop.is_set() and time.monotonic() < deadline:
            self.requests += 1
            try:
                conn = http.client.HTTPSConnection("localhost", self.port, context=self.context, timeout=10)
                conn.request("GET", self.path, headers={"Authorization": f"Basic {self.auth}"})
                status = conn.getresponse().status
                conn.close()
                if status not in {200, 404}:
                    self.failures.append(f"HTTP {status}")
            except OSError as exc:
                self.failures.append(str(exc))
            time.sleep(0.02)


def start_peer(folder: Path) -> tuple[subprocess.Popen, int]:
    """The peer: plain pypiserver taking uploads without auth, as in the seed deployment."""
    folder.mkdir()
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "pypi-server"), "run", "-i", "127.0.0.1", "-p", str(port), "-a", ".", "-P", ".",
         "--disable-fallback", "--server", "auto", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the peer pypiserver did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    port = free_port()
    os.environ.update(
        DEBUG="1",
        DATABASE_URL=f"sqlite:///{work / 'bench.sqlite3'}",
        PORTAL_VAR_DIR=str(work),
        PORTAL_BASE_URL=f"http://127.0.0.1:{port}",
        LOCAL_DRIVER_DATA_DIR=str(work / "indexes"),
        FILE_UPLOAD_TEMP_DIR=str(work / "receiving"),
        PACKAGES_MAX_UPLOAD_BYTES=str((args.megabytes + 64) * MB),
        REDIS_URL=os.environ.get("BENCH_REDIS_URL", os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")),
        DJANGO_SETTINGS_MODULE="portal.settings",
        ALLOWED_HOSTS="testserver,127.0.0.1,localhost",
    )
    (work / "receiving").mkdir()
    import base64

    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from packages_ui.models import PackageFile
    from provisioning import services
    from provisioning.models import Membership, PrivateIndex, Team
    from tests.builders import build_wheel

    call_command("migrate", verbosity=0)
    user = User.objects.create_user("bench-publisher")
    team = Team.objects.create(name="Bench", slug="bench")
    Membership.objects.create(user=user, team=team, role="lead")
    index = PrivateIndex.objects.create(name="bench-upload", team=team, requested_by=user)
    services.index_provision_perform(index.pk)
    index.refresh_from_db()
    if index.state != "ready":
        raise SystemExit(f"The index did not build: {index.error}")
    publish, publish_password = services.credential_create(index=index, kind="publish", label="bench", actor=user)
    read, read_password = services.credential_create(index=index, kind="read", label="reader", actor=user)
    cafile = work / "ca.pem"
    cafile.write_text(services.index_ca_pem(index))
    portal = Portal(clean_env(), port)
    worker = peer = reader = None
    try:
        worker = start_worker("packages")
        peer, peer_port = start_peer(work / "peer-packages")
        auth = base64.b64encode(f"{read.username}:{read_password}".encode()).decode()
        reader = Reader(index.deployment["https_port"], "/simple/bench-big/", auth, str(cafile))
        reader.start()
        print(f"Building {args.runs} wheels of {args.megabytes} MiB ...", flush=True)
        wheels = [build_wheel(work / f"w{run}", "bench-big", f"1.{run}", payload_bytes=args.megabytes * MB)
                  for run in range(args.runs)]  # fmt: skip
        before = rss_kb(portal.worker_pid)
        portal_times, peer_times, live_times = [], [], []
        for wheel in wheels:
            os.sync()
            start = time.perf_counter()
            portal_times.append(twine(index.upload_url, publish.username, publish_password, wheel))
            while not PackageFile.objects.filter(filename=wheel.name, state="live").exists():
                if time.perf_counter() - start > 600:
                    raise SystemExit(f"{wheel.name} did not go live within 600 s")
                time.sleep(0.02)
            live_times.append(time.perf_counter() - start)
            os.sync()
            peer_times.append(twine(f"http://127.0.0.1:{peer_port}/", "any", "any", wheel))
        peak = rss_kb(portal.worker_pid, "VmHWM")
        time.sleep(0.5)
        reader.stop.set()
        reader.join()

        size = wheels[0].stat().st_size / MB
        p_med, q_med, l_med = (statistics.median(t) for t in (portal_times, peer_times, live_times))
        print(f"\ntwine upload of a {size:.0f} MiB wheel, medians of {args.runs} (same run, same disk):")
        print(f"  to the portal's upload URL (checked, recorded) : {p_med:6.2f} s  {size / p_med:6.0f} MiB/s")
        print(f"  to plain pypiserver, no auth (the peer)        : {q_med:6.2f} s  {size / q_med:6.0f} MiB/s"
              f"  -> portal/peer time {p_med / q_med:.2f}")  # fmt: skip
        print(f"  upload start -> live (refresh + served check)  : {l_med:6.2f} s")
        print(f"  gunicorn worker RSS: {before / 1024:.1f} MiB before, peak {peak / 1024:.1f} MiB "
              f"-> growth {(peak - before) / 1024:.1f} MiB")  # fmt: skip
        print(
            f"  reader on /simple/bench-big/ every 20 ms through Caddy: {reader.requests} requests, "
            f"{len(reader.failures)} failed (target 0){': ' + reader.failures[0] if reader.failures else ''}"
        )
    finally:
        if reader is not None:
            reader.stop.set()
        portal.stop()
        stop(worker)
        stop(peer)
        index.refresh_from_db()
        services.index_delete(index=index, actor=user)
        services.index_teardown_perform(index.pk)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
