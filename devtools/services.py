"""Finding and starting this machine's Redis and PostgreSQL, for `make run` and `make test`.

Never hangs: every probe has a short timeout, and when a service cannot be started the message
says how to get it.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from urllib.parse import urlsplit


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait(host: str, port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if reachable(host, port, 0.5):
            return True
        time.sleep(0.2)
    return False


def ensure_redis(url: str) -> str | None:
    """Start the machine's redis-server when the URL points at this machine and nothing answers.
    Returns None when Redis answers, or a message saying what to do."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if reachable(host, port):
        return None
    if host not in {"127.0.0.1", "localhost"}:
        return f"Redis at {host}:{port} does not answer (REDIS_URL={url})."
    server = shutil.which("redis-server")
    if not server:
        return (
            f"Redis does not answer on {host}:{port} and redis-server is not installed. "
            "Install it (apt-get install redis-server, brew install redis) or set REDIS_URL."
        )
    print(f"Starting the machine's Redis on port {port} …", flush=True)
    subprocess.run(
        [server, "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        check=False,
        timeout=15,
    )
    return None if _wait(host, port, 10) else f"redis-server was started but port {port} does not answer."


def ensure_postgres(url: str) -> str | None:
    """Start the machine's PostgreSQL cluster when DATABASE_URL points at this machine and it is down.
    Returns None when it answers (or the URL is not PostgreSQL), or a message saying what to do."""
    parts = urlsplit(url)
    if not parts.scheme.startswith("postgres"):
        return None
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    if reachable(host, port):
        return None
    if host not in {"127.0.0.1", "localhost"}:
        return f"PostgreSQL at {host}:{port} does not answer (DATABASE_URL)."
    ctl = shutil.which("pg_ctlcluster")
    versions = sorted(os.path.basename(p) for p in glob.glob("/etc/postgresql/*"))
    if not ctl or not versions:
        return (
            f"PostgreSQL does not answer on {host}:{port} and no local cluster was found. Install it "
            "(apt-get install postgresql) or set DATABASE_URL (sqlite:///var/portal.sqlite3 works for a laptop run)."
        )
    print(f"Starting the machine's PostgreSQL {versions[-1]} …", flush=True)
    subprocess.run([ctl, "--skip-systemctl-redirect", versions[-1], "main", "start"], check=False, timeout=60)
    return None if _wait(host, port, 20) else f"PostgreSQL was started but port {port} does not answer."


def ensure_debian_packages(packages: dict[str, str], purpose: str) -> str | None:
    """Install Debian `packages` ({name: a file it provides}) that are missing, when we may
    (root + apt). None when all are there, else why not."""
    missing = [name for name, path in packages.items() if not os.path.exists(path)]
    if not missing:
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return f"{', '.join(missing)} not installed (apt-get install {' '.join(missing)}); {purpose} will be skipped."
    print(f"Installing Debian's {', '.join(missing)} for {purpose} …", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, timeout=600)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=False, env=env, timeout=1200
    )
    still = [name for name, path in packages.items() if not os.path.exists(path)]
    return f"apt-get could not install {', '.join(still)}." if still else None


def ensure_chromium() -> str | None:
    """Install Debian's Chromium for the browser tests when it is missing and we may (root + apt)."""
    return ensure_debian_packages({"chromium": "/usr/bin/chromium"}, "the browser tests")


def ensure_pebble() -> str | None:
    """Install Debian's pebble (Let's Encrypt's ACME test server) and the tools the Azure
    emulator uses to run container groups (unshare/nsenter, ip) for the Azure end-to-end tests."""
    return ensure_debian_packages(
        {"pebble": "/usr/bin/pebble", "util-linux": "/usr/bin/nsenter", "iproute2": "/usr/sbin/ip"},
        "the Azure end-to-end tests",
    )
