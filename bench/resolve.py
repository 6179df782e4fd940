"""Resolve figures (issue 12): pip and uv resolving ~30 requirements, some with wheels of 100 MB
or more, against an index WITH the modern protocol (PEP 658/714 metadata files, Requires-Python,
PEP 691 JSON) and WITHOUT it (the old way: the same server and files, a manifest without metadata
files or Requires-Python, so clients must download wheels to read their METADATA), same run.

    .venv/bin/python bench/resolve.py [--projects 30] [--big 6] [--big-megabytes 110] [--python 3.11] [--runs 3]

Builds real wheels (tests.builders.build_wheel) in a temporary folder: per project 1.0 and
2.0 (the big projects' 2.0 is the big wheel) and 3.0 needing Python >= 3.13, every second project
depending on the next. Two index servers (provisioning/index_server.py) share the folder with
different manifests, each behind its own Caddy over HTTPS (the index's Caddyfile, tls internal).
Runs `pip install --dry-run --report` and `uv pip compile` (no caches) on each, and prints seconds
and the bytes sent to the client on the wire (summed from Caddy's access log: compressed pages and
metadata files, whole or ranged wheel downloads). Targets: bytes <= 2 % of the
old way, time <= half. Every process is stopped by PID, the folder deleted. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.serve import MB, start_caddy, stop  # noqa: E402
from tests.builders import build_wheel, metadata_text  # noqa: E402
from tests.index_server_support import IndexServer, manifest_entry  # noqa: E402

USER, PASSWORD = "bench", "r" * 40


def project_name(n: int, big: int) -> str:
    return f"big-{n}" if n < big else f"small-{n}"


def bench_wheel(folder: Path, name: str, version: str, *, requires: str, requires_python: str, payload: int) -> Path:
    text = metadata_text(name, version, requires_python or None).rstrip("\n") + "\n"
    if requires:
        text += f"Requires-Dist: {requires}\n"
    info = f"{name.replace('-', '_')}-{version}.dist-info/METADATA"
    extra = {info: (text + "\n").encode()}
    return build_wheel(folder, name, version, extra_files=extra, payload_bytes=payload)


def build_files(packages: Path, projects: int, big: int, big_bytes: int) -> list[dict]:
    """The manifest entries (with metadata files written) of every wheel."""
    entries = []
    for n in range(projects):
        name = project_name(n, big)
        requires = f"{project_name((n + 1) % projects, big)}>=1.0" if n % 2 == 0 else ""
        for version, payload, python in (("1.0", 20_000, ""), ("2.0", big_bytes if n < big else 200_000, ""),
                                         ("3.0", 20_000, ">=3.13")):  # fmt: skip
            path = bench_wheel(packages, name, version, requires=requires, requires_python=python, payload=payload)
            entries.append(manifest_entry(path, name, version, requires_python=python or None))
    return entries


def old_way(entries: list[dict]) -> list[dict]:
    """The same files as a pre-issue-12 index announced them: no metadata file, no Requires-Python."""
    return [{**entry, "metadata_sha256": None, "requires_python": None} for entry in entries]


def client_env(cafile: str) -> dict[str, str]:
    drop = {"REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith(("PIP_", "UV_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", UV_NO_CONFIG="1", SSL_CERT_FILE=cafile)
    return env


def wire_log(server: IndexServer) -> Path:
    return server.folder / "caddy-access.log"


def sent_bytes(server: IndexServer, mark: int) -> tuple[int, int]:
    """(bytes, requests) Caddy sent to clients after `mark` (an offset in its access log)."""
    lines = wire_log(server).read_bytes()[mark:].decode(errors="replace").splitlines()
    sizes = [json.loads(line).get("size", 0) for line in lines if line.startswith("{")]
    return sum(sizes), len(sizes)


def run_client(argv: list[str], env: dict[str, str], server: IndexServer, runs: int) -> tuple[float, int, int, str]:
    """(median seconds, bytes from the index, requests, error or '') over `runs` runs; bytes and
    requests from the last run (every run sends the same requests: no caches)."""
    timings = []
    for _ in range(runs):
        seconds, sent, count, error = run_once(argv, env, server)
        timings.append(seconds)
        if error:
            break
    return statistics.median(timings), sent, count, error


def run_once(argv: list[str], env: dict[str, str], server: IndexServer) -> tuple[float, int, int, str]:
    time.sleep(0.3)  # the access log line of the last request is written once its body is sent
    mark = wire_log(server).stat().st_size if wire_log(server).exists() else 0
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800)
    seconds = time.perf_counter() - started
    time.sleep(0.3)
    sent, count = sent_bytes(server, mark)
    error = "" if result.returncode == 0 else (result.stderr.strip().splitlines() or ["failed"])[-1]
    return seconds, sent, count, error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=int, default=30)
    parser.add_argument("--big", type=int, default=6, help="how many projects have a big 2.0 wheel")
    parser.add_argument("--big-megabytes", type=int, default=110)
    parser.add_argument("--python", default="3.11", help="the target Python the resolvers resolve for")
    parser.add_argument("--runs", type=int, default=3, help="runs per client and index (median seconds)")
    args = parser.parse_args()
    uv = str(Path(sys.executable).with_name("uv"))

    with tempfile.TemporaryDirectory(prefix="bench-resolve-") as temp:
        folder = Path(temp)
        modern, old = IndexServer(folder / "modern"), IndexServer(folder / "old")
        total = args.big * args.big_megabytes
        print(
            f"Building {args.projects * 3} wheels ({args.big} of {args.big_megabytes} MiB, ~{total} MiB)...", flush=True
        )
        entries = build_files(modern.packages, args.projects, args.big, args.big_megabytes * MB)
        old.folder.mkdir()
        old.packages.symlink_to(modern.packages)  # the same files, announced the old way
        modern.write_manifest(entries, generation="modern")
        old.write_manifest(old_way(entries), generation="old")
        requirements = folder / "requirements.in"
        requirements.write_text("".join(f"{project_name(n, args.big)}\n" for n in range(args.projects)))
        processes = []
        try:
            rows = []
            for label, server in (("with metadata files", modern), ("old way", old)):
                server.write_tokens({USER: PASSWORD})
                server.start()
                caddy, base_url, cafile = start_caddy(server.folder, urlsplit(server.base_url).port)
                processes.append(caddy)
                index_url = base_url.replace("https://", f"https://{USER}:{PASSWORD}@") + "/simple/"
                env = client_env(cafile)
                report = folder / "report.json"
                pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--report",
                       str(report), "--python-version", args.python, "--only-binary=:all:", "--no-cache-dir",
                       "--index-url", index_url, "--cert", cafile, "-r", str(requirements)]  # fmt: skip
                uv_compile = [uv, "pip", "compile", "--no-cache", "--no-header", "--python-version", args.python,
                              "--index-url", index_url, str(requirements)]  # fmt: skip
                for client, argv in (("pip install --dry-run --report", pip), ("uv pip compile", uv_compile)):
                    seconds, sent, count, error = run_client(argv, env, server, args.runs)
                    resolved = ""
                    if client.startswith("pip") and not error:
                        resolved = f"{len(json.loads(report.read_text())['install'])} resolved"
                    rows.append((client, label, seconds, sent, count, error or resolved))
        finally:
            modern.stop()
            old.stop()
            for process in processes:
                stop(process)

    print(f"\nResolving {args.projects} requirements for Python {args.python}, no caches, median of {args.runs}:")
    print(f"  {'client':<32} {'index':<20} {'seconds':>8} {'bytes on the wire':>17} {'requests':>9}  note")
    for client, label, seconds, sent, count, note in rows:
        print(f"  {client:<32} {label:<20} {seconds:8.2f} {sent:17,d} {count:9d}  {note}")
    print("\nWith metadata files vs the old way (targets: bytes <= 2 %, time <= 50 %):")
    for client in dict.fromkeys(row[0] for row in rows):
        new, before = [row for row in rows if row[0] == client]
        print(
            f"  {client:<32} bytes {100 * new[3] / max(before[3], 1):6.2f} %   time {100 * new[2] / before[2]:6.1f} %"
        )


if __name__ == "__main__":
    main()
