"""Serving figures: `/simple/<project>/` through the index server with a read token, beside plain
pypiserver without auth on the same files, in the same run.

    .venv/bin/python bench/serve.py [--requests 2000] [--concurrency 10] [--big-megabytes 1024] [--direct]

Builds a packages folder in a temporary directory (one project of 20 small real wheels, one
project holding a sparse 1 GiB file named as a wheel), writes the manifest and tokens.json, starts
provisioning/index_server.py behind Caddy over HTTPS with the index's own Caddyfile (as an index
runs; `--direct` skips Caddy), and `pypi-server run -a . -P . --disable-fallback` on loopback, and
prints req/s and p50 at the given concurrency, then p50 for the project with the big file.
Targets (issue 9): ratio >= 1.0; p50 <= 20 ms whatever the file sizes. Every process is stopped
by PID and the folder (with the big file) is deleted. Asserts nothing.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from provisioning.spec import Placement, render_caddyfile  # noqa: E402
from tests.builders import build_wheel  # noqa: E402
from tests.index_server_support import IndexServer, free_port, manifest_entry  # noqa: E402

MB = 1024 * 1024
PROJECT = "bench-pkg"
BIG_PROJECT = "big-pkg"
USER, PASSWORD = "bench", "t" * 40


class Target:
    """Where requests go: a base URL, optional Basic credentials and CA file."""

    def __init__(self, base_url: str, *, auth: tuple[str, str] | None = None, cafile: str | None = None) -> None:
        parts = urlsplit(base_url)
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.headers = {"Accept": "text/html"}
        if auth:
            self.headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
        self.context = ssl.create_default_context(cafile=cafile) if self.https else None

    def connect(self) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=60)
        return http.client.HTTPConnection(self.host, self.port, timeout=60)


def load(target: Target, path: str, *, requests: int, concurrency: int) -> tuple[float, float, int]:
    """`requests` GETs of `path` over `concurrency` keep-alive connections: (req/s, p50 ms, errors)."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        nonlocal errors
        connection = target.connect()
        try:
            for _ in iter(lambda: next(counter, None), None):
                started = time.perf_counter()
                try:
                    connection.request("GET", target.prefix + path, headers=target.headers)
                    reply = connection.getresponse()
                    reply.read()
                    ok = reply.status == 200
                except (OSError, http.client.HTTPException):
                    ok = False
                    connection.close()
                    connection = target.connect()
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    errors += not ok
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return len(latencies) / wall, statistics.median(latencies) * 1000, errors


def figures(rate: float, p50: float, errors: int) -> str:
    return f"{rate:7.0f} req/s  p50 {p50:6.2f} ms  errors {errors}"


def start_plain_pypiserver(packages: Path, folder: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    pypi_server = Path(sys.executable).with_name("pypi-server")
    with open(folder / "plain.log", "wb") as log:
        process = subprocess.Popen(
            [str(pypi_server), "run", "-i", "127.0.0.1", "-p", str(port), "-a", ".", "-P", ".",
             "--disable-fallback", "--server", "auto", str(packages)],
            stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
    target = Target(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            connection = target.connect()
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return process, port
        except OSError:
            time.sleep(0.05)
    stop(process)
    raise SystemExit("plain pypiserver did not start")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def start_caddy(folder: Path, upstream_port: int) -> tuple[subprocess.Popen, str, str]:
    """Caddy with the Caddyfile an index gets (tls internal), in front of the index server. Its
    access log (JSON, `size` = bytes sent to the client, after compression) goes to
    folder/caddy-access.log."""
    https_port, http_port = free_port(), free_port()
    placement = Placement(
        hostname="localhost", https_port=https_port, http_port=http_port, server_port=upstream_port, tls="internal"
    )
    caddy_dir = folder / "caddy"
    (caddy_dir / "data").mkdir(parents=True)
    site_log = f"\tlog {{\n\t\toutput file {folder / 'caddy-access.log'}\n\t\tformat json\n\t}}\n"
    caddyfile = render_caddyfile(placement)
    # The bench's only change to the index's Caddyfile: an access log to count bytes on the wire.
    (caddy_dir / "Caddyfile").write_text(caddyfile.replace("\tencode zstd gzip", site_log + "\tencode zstd gzip"))
    env = {**os.environ, "XDG_DATA_HOME": str(caddy_dir / "data"), "XDG_CONFIG_HOME": str(caddy_dir)}
    with open(folder / "caddy.log", "wb") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("caddy")), "run", "--config", str(caddy_dir / "Caddyfile"),
             "--adapter", "caddyfile"],
            stdout=log, stderr=log, env=env, start_new_session=True,
        )  # fmt: skip
    cafile = caddy_dir / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if cafile.exists():
            try:
                connection = Target(f"https://localhost:{https_port}", cafile=str(cafile)).connect()
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    return process, f"https://localhost:{https_port}", str(cafile)
            except (OSError, ssl.SSLError):
                pass
        time.sleep(0.05)
    stop(process)
    raise SystemExit("Caddy did not start")


def build_files(packages: Path, big_megabytes: int) -> list[dict]:
    packages.mkdir(parents=True)
    entries = [
        manifest_entry(build_wheel(packages, PROJECT, f"1.{n}"), PROJECT, f"1.{n}", requires_python=">=3.8")
        for n in range(20)
    ]
    # Sparse: instant to create, no disk used. Neither server opens the archive to list it, and
    # plain pypiserver's per-request hashing reads all of it, as it would a real 1 GB wheel.
    big = packages / "big_pkg-1.0-py3-none-any.whl"
    with open(big, "wb") as file:
        file.truncate(big_megabytes * MB)
    entries.append(manifest_entry(big, BIG_PROJECT, "1.0", with_metadata=False))
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--big-megabytes", type=int, default=1024)
    parser.add_argument("--big-requests", type=int, default=20)
    parser.add_argument("--direct", action="store_true", help="send the token requests to the server, not Caddy")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as temp:
        folder = Path(temp)
        server = IndexServer(folder / "index")
        print(f"Building the files ({args.big_megabytes} MiB sparse file included)...", flush=True)
        entries = build_files(server.packages, args.big_megabytes)
        server.write_manifest(entries, generation="bench")
        server.write_tokens({USER: PASSWORD})
        plain = caddy = None
        try:
            server.start()
            plain, plain_port = start_plain_pypiserver(server.packages, folder)
            if args.direct:
                base_url, cafile, via = server.base_url, None, "direct"
            else:
                caddy, base_url, cafile = start_caddy(folder, urlsplit(server.base_url).port)
                via = "through Caddy, HTTPS"
            ours = Target(base_url, auth=(USER, PASSWORD), cafile=cafile)
            theirs = Target(f"http://127.0.0.1:{plain_port}")
            page = f"/simple/{PROJECT}/"
            for target in (ours, theirs):
                load(target, page, requests=50, concurrency=2)  # warm-up
            n, c = args.requests, args.concurrency
            print(f"GET {page} (20 wheels), {n} requests at c={c}, same run:")
            ours_rate, ours_p50, ours_errors = load(ours, page, requests=n, concurrency=c)
            theirs_rate, theirs_p50, theirs_errors = load(theirs, page, requests=n, concurrency=c)
            print(f"  index server, read token ({via}): {figures(ours_rate, ours_p50, ours_errors)}")
            print(f"  plain pypiserver, no auth: {figures(theirs_rate, theirs_p50, theirs_errors)}")
            print(f"  ratio {ours_rate / theirs_rate:.2f} (target >= 1.0)")

            big_page = f"/simple/{BIG_PROJECT}/"
            big_n = args.big_requests
            print(f"GET {big_page} (one {args.big_megabytes} MiB file), c=1 (target p50 <= 20 ms):")
            _, big_p50, big_errors = load(ours, big_page, requests=big_n, concurrency=1)
            print(f"  index server, read token: p50 {big_p50:8.2f} ms over {big_n} requests, errors {big_errors}")
            plain_n = max(1, min(5, big_n))  # plain pypiserver hashes the whole file on every request
            _, plain_p50, plain_errors = load(theirs, big_page, requests=plain_n, concurrency=1)
            print(
                f"  plain pypiserver, no auth: p50 {plain_p50:8.2f} ms over {plain_n} requests, errors {plain_errors}"
            )
        finally:
            server.stop()
            for process in (plain, caddy):
                if process is not None:
                    stop(process)


if __name__ == "__main__":
    main()
