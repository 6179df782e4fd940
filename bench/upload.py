"""Upload figures: a big wheel through the portal to the local share, and upload-to-live latency.

    .venv/bin/python bench/upload.py [--megabytes 500] [--latency-runs 5]

Runs the real stack on this machine: the portal under gunicorn (one sync worker, as deployed),
an index built by the local driver (pypiserver + Caddy), a real `rqworker packages` process for
the restart jobs. The upload goes as the upload script sends it (the file as the raw request
body). Prints:
- throughput of the upload as a ratio of a plain copy of the same file on the same disk
  (`cp`, and a Python 1 MiB read/write loop);
- the gunicorn worker's RSS before the upload and its peak (VmHWM) after: the growth;
- upload-to-live latency of one small wheel (POST until the file is marked live after the
  restart and the served check), median of N.
Targets (issue 5): ratio >= 0.7, RSS growth < 64 MB, latency < 3 s. Asserts nothing.
"""

from __future__ import annotations

import argparse
import http.client
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def child_pids(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(p) for p in text]


def timed(func) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def python_copy(src: Path, dst: Path) -> None:
    with open(src, "rb") as source, open(dst, "wb") as target:
        while chunk := source.read(MB):
            target.write(chunk)


def linking_local_driver():
    """EXPERIMENT (--linking-driver), not the shipped driver: LocalDriver.write_file with the fast
    path proposed to the lead. When the source is a regular file on the same filesystem, hard-link
    it under the temporary name and rename, instead of copying the bytes a second time."""
    from provisioning.drivers.local import TEMP_PREFIX, LocalDriver

    class LinkingLocalDriver(LocalDriver):
        def write_file(self, spec, share, path, source, *, size):
            name = getattr(source, "name", None)
            if isinstance(name, str) and os.path.isfile(name) and os.path.getsize(name) == size:
                target = self._share_path(spec, share, path)
                target.parent.mkdir(parents=True, exist_ok=True)
                temp = target.parent / f"{TEMP_PREFIX}{secrets.token_hex(16)}"
                try:
                    os.link(name, temp)
                except OSError:  # another filesystem (EXDEV) or no links: copy as usual
                    return super().write_file(spec, share, path, source, size=size)
                os.chmod(temp, 0o644)
                os.replace(temp, target)
                return None
            return super().write_file(spec, share, path, source, size=size)

    return LinkingLocalDriver


class Portal:
    """The portal under gunicorn, with a session cookie and CSRF token for one user."""

    def __init__(self, env: dict[str, str], session: str) -> None:
        self.port = free_port()
        self.csrf = secrets.token_hex(16)  # 32 characters: Django accepts an unmasked secret
        self.cookie = f"sessionid={session}; csrftoken={self.csrf}"
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "portal.wsgi", "-b", f"127.0.0.1:{self.port}",
             "-w", "1", "--timeout", "900", "--log-level", "warning"],
            cwd=ROOT, env=env, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.get("/health/")
                break
            except OSError:
                time.sleep(0.1)
        self.worker_pid = child_pids(self.process.pid)[0]

    def get(self, path: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request("GET", path, headers={"Cookie": self.cookie})
        response = conn.getresponse()
        response.read()
        conn.close()
        return response.status

    def upload(self, index_id: int, path: Path) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=900, blocksize=MB)
        with open(path, "rb") as body:
            conn.request(
                "POST", f"/indexes/{index_id}/packages/upload/?filename={quote(path.name)}", body=body,
                headers={"Cookie": self.cookie, "X-CSRFToken": self.csrf, "HX-Request": "true",
                         "Content-Type": "application/octet-stream", "Content-Length": str(path.stat().st_size)},
            )  # fmt: skip
        response = conn.getresponse()
        text = response.read().decode(errors="replace")
        conn.close()
        return response.status, text

    def stop(self) -> None:
        os.killpg(self.process.pid, 15)
        self.process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=int, default=500)
    parser.add_argument("--latency-runs", type=int, default=5)
    parser.add_argument("--linking-driver", action="store_true", help="experiment: see linking_local_driver()")
    args = parser.parse_args()
    if args.linking_driver:
        os.environ["PROVISIONING_DRIVER"] = "bench.upload.LinkingLocalDriver"

    work = Path(tempfile.mkdtemp(prefix="bench-upload-"))
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
    from django.test import Client

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
    index = PrivateIndex.objects.create(name="bench-upload", team=team, requested_by=user)
    services.index_provision_perform(index.pk)
    index.refresh_from_db()
    if index.state != "ready":
        raise SystemExit(f"The index did not build: {index.error}")
    client = Client()
    client.force_login(user)
    env = {k: v for k, v in os.environ.items() if k not in {"REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"}}
    portal = Portal(env, client.cookies["sessionid"].value)
    worker = None
    try:
        print(f"Building a {args.megabytes} MB wheel ...", flush=True)
        big = build_wheel(work, "bench-big", "1.0", payload_bytes=args.megabytes * MB)
        size = big.stat().st_size
        # Every timing starts from a clean page cache state (os.sync): otherwise the dirty
        # pages of the previous step decide the figure.
        cp_times, py_times, upload_times = [], [], []
        for _ in range(3):
            target = work / "copy.whl"
            os.sync()
            cp_times.append(timed(lambda: subprocess.run(["cp", str(big), str(target)], check=True)))  # noqa: B023
            target.unlink()
            os.sync()
            py_times.append(timed(lambda: python_copy(big, target)))  # noqa: B023
            target.unlink()

        assert portal.get(f"/indexes/{index.pk}/packages/") == 200
        before = rss_kb(portal.worker_pid)
        samples: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append(rss_kb(portal.worker_pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        for _ in range(3):
            PackageFile.objects.filter(filename=big.name).delete()
            get_driver().delete_file(index_spec(index), SHARE_PACKAGES, big.name)
            os.sync()
            start = time.perf_counter()
            status, text = portal.upload(index.pk, big)
            upload_times.append(time.perf_counter() - start)
            if status != 201:
                raise SystemExit(f"Upload failed: HTTP {status}: {text[:500]}")
        stop.set()
        sampler.join()
        peak = rss_kb(portal.worker_pid, "VmHWM")

        cp_med, py_med, up_med = (statistics.median(t) for t in (cp_times, py_times, upload_times))
        print(
            f"\nBig upload: {size / MB:.0f} MiB wheel, raw body through gunicorn -> temp file -> validation "
            "(every entry's CRC) -> driver.write_file (temp name + rename); medians of 3, os.sync() before each"
        )
        print(
            f"  upload through the portal : {up_med:6.2f} s  {size / MB / up_med:7.0f} MiB/s  "
            f"(runs: {', '.join(f'{t:.2f}' for t in upload_times)})"
        )
        print(
            f"  plain copy, cp            : {cp_med:6.2f} s  {size / MB / cp_med:7.0f} MiB/s  "
            f"-> ratio {cp_med / up_med:.2f}"
        )
        print(
            f"  plain copy, Python 1 MiB  : {py_med:6.2f} s  {size / MB / py_med:7.0f} MiB/s  "
            f"-> ratio {py_med / up_med:.2f}"
        )
        print(
            f"  gunicorn worker RSS       : {before / 1024:.1f} MiB before, peak {peak / 1024:.1f} MiB "
            f"(sampled max {max(samples) / 1024:.1f} MiB) -> growth {(peak - before) / 1024:.1f} MiB"
        )

        # Upload-to-live: a real rqworker handles the restart jobs (the big file's first).
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", "packages"], cwd=ROOT, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while PackageFile.objects.filter(state="stored").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        latencies = []
        for run in range(args.latency_runs):
            small = build_wheel(work, "bench-small", f"1.{run}")
            start = time.perf_counter()
            status, text = portal.upload(index.pk, small)
            if status != 201:
                raise SystemExit(f"Upload failed: HTTP {status}: {text[:500]}")
            while not PackageFile.objects.filter(filename=small.name, state="live").exists():
                if time.perf_counter() - start > 60:
                    raise SystemExit(f"{small.name} did not go live within 60 s")
                time.sleep(0.02)
            latencies.append(time.perf_counter() - start)
            time.sleep(0.5)
        print(f"\nUpload-to-live, one small wheel ({small.stat().st_size} bytes), {args.latency_runs} runs:")
        print(f"  median {statistics.median(latencies):.2f} s, min {min(latencies):.2f} s, "
              f"max {max(latencies):.2f} s  (POST -> restart -> /simple/<project>/ shows it -> live)")  # fmt: skip
    finally:
        portal.stop()
        if worker is not None:
            os.killpg(worker.pid, 15)
            worker.wait(timeout=30)
        index.refresh_from_db()
        services.index_delete(index=index, actor=user)
        services.index_teardown_perform(index.pk)
        shutil.rmtree(work, ignore_errors=True)


def __getattr__(name: str):
    if name == "LinkingLocalDriver":
        return linking_local_driver()
    raise AttributeError(name)


if __name__ == "__main__":
    main()
