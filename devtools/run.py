"""`make run`: the whole portal on this machine with its embedded defaults.

Starts (and on Ctrl-C, SIGTERM or SIGHUP stops, by PID) everything the portal needs here: the
machine's Redis if it is down, the database schema, the local sign-in provider, one RQ worker,
the scheduler and the web server; brings back indexes that were ready before; prints where to
go. The settings it uses are written to `.env` (PORTAL_ENV_FILE), which manage.py reads, so the
README's commands work from a second shell. One run per database: a second one is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from devtools.entra_provider.demo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT_ID
from devtools.services import ensure_postgres, ensure_redis, reachable
from portal.envfile import ENV_FILE_MARKER, env_file_path
from portal.job_table import QUEUES

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Child:
    name: str
    argv: list[str]
    port: int | None = None
    process: subprocess.Popen | None = None


def say(message: str) -> None:
    """Print, unless the terminal is gone (SIGHUP): stopping must go on regardless."""
    with contextlib.suppress(OSError):
        print(message, flush=True)


def free_port(preferred: int, what: str) -> int:
    for port in range(preferred, preferred + 100):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port != preferred:
            print(f"Port {preferred} is busy; the {what} uses {port}.", flush=True)
        return port
    raise SystemExit(f"No free port near {preferred} for the {what}.")


def base_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DEBUG", "1")
    env.setdefault("PROVISIONING_DRIVER", "provisioning.drivers.local.LocalDriver")
    # The machine's CA bundle variables would override the index CAs the portal trusts.
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        env.pop(name, None)
    return env


def var_dir(env: dict[str, str]) -> Path:
    """Where the laptop run keeps its database, index folders and the provider's files."""
    return Path(env.get("PORTAL_VAR_DIR") or ROOT / "var").resolve()


def database_url(env: dict[str, str]) -> str:
    return env.get("DATABASE_URL") or f"sqlite:///{var_dir(env) / 'portal.sqlite3'}"


def run_lock(env: dict[str, str]) -> IO[str] | None:
    """Hold a lock for this database while the run lives (the kernel drops it when this process
    dies), or None when another run holds it."""
    key = hashlib.sha256(database_url(env).encode()).hexdigest()[:16]
    handle = open(Path(tempfile.gettempdir()) / f"index-portal-run-{key}.lock", "a+")  # noqa: SIM115 - held
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        other = handle.read().strip() or "unknown"
        handle.close()
        print(
            f"error: another `make run` (pid {other}) is already using this database ({database_url(env)}).\n"
            f"Stop it first (Ctrl-C in its terminal, or kill {other}), or give this run its own "
            "database with PORTAL_VAR_DIR or DATABASE_URL.",
            file=sys.stderr,
        )
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def manage(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=check)


def sign_in_setup(env: dict[str, str]) -> tuple[list[Child], list[str]]:
    """Children and instructions for signing in on this machine (the local Entra-shaped provider);
    sets the ENTRA_* settings in `env`."""
    # A configured ENTRA_AUTHORITY (a real tenant) wins over the local provider.
    if env.get("ENTRA_AUTHORITY"):
        return [], [f"Sign in: with Microsoft Entra ID ({env['ENTRA_AUTHORITY']})."]
    port = free_port(int(env.get("ENTRA_PROVIDER_PORT", "8443")), "sign-in provider")
    state_dir = var_dir(env) / "entra"
    env.update(
        ENTRA_TENANT_ID=DEMO_TENANT_ID,
        ENTRA_CLIENT_ID=DEMO_CLIENT_ID,
        ENTRA_CLIENT_SECRET=DEMO_CLIENT_SECRET,
        ENTRA_AUTHORITY=f"https://127.0.0.1:{port}/{DEMO_TENANT_ID}",
        ENTRA_CA_BUNDLE=str(state_dir / "ca.pem"),
        ENTRA_REDIRECT_URI=f"{env['PORTAL_BASE_URL']}/auth/callback",
        ENTRA_POST_LOGOUT_REDIRECT_URI=f"{env['PORTAL_BASE_URL']}/auth/signed-out/",
    )
    provider = Child(
        "sign-in provider",
        [PYTHON, "-m", "devtools.entra_provider", "--port", str(port), "--state-dir", str(state_dir),
         "--redirect-uri", env["ENTRA_REDIRECT_URI"]],
        port=port,
    )  # fmt: skip
    return [provider], [
        f"Sign in: local Entra-shaped provider at https://127.0.0.1:{port}, picking a demo user"
        f" (its CA is {state_dir / 'ca.pem'}: the browser warns once).",
    ]


def documented_settings() -> list[str]:
    """Every setting name in .env.example, in its order."""
    text = (ROOT / ".env.example").read_text()
    return list(dict.fromkeys(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE)))


def _secret(name: str, value: str) -> bool:
    """A real secret (a tenant's client secret, an Azure key) stays out of the file; the local
    provider's demo secret is no secret."""
    return any(word in name for word in ("SECRET", "PASSWORD", "PASSPHRASE", "KEY")) and value != DEMO_CLIENT_SECRET


def write_env_file(env: dict[str, str]) -> Path | None:
    """Write this run's settings where manage.py reads them. A `.env` someone wrote by hand (for
    docker compose) is left alone; returns the path written, or None."""
    path = env_file_path(ROOT)
    if path.exists() and not path.read_text().startswith(ENV_FILE_MARKER):
        print(f"Note: {path} was not written by `make run`; it is left as it is.", flush=True)
        return None
    lines = [
        ENV_FILE_MARKER,
        "# The settings of the running `make run`, read by manage.py (values already in the",
        "# environment win). Rewritten at every `make run`; never use it in production.",
    ]
    lines += [f"{name}={env[name]}" for name in documented_settings() if env.get(name) and not _secret(name, env[name])]
    path.write_text("\n".join(lines) + "\n")
    return path


def start(child: Child, env: dict[str, str]) -> None:
    child.process = subprocess.Popen(child.argv, cwd=ROOT, env=env, start_new_session=True)


def stop(children: list[Child]) -> None:
    for child in reversed(children):
        if child.process and child.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for child in children:
        if child.process is None:
            continue
        try:
            child.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()


def wait_for_port(port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if reachable("127.0.0.1", port, 0.3):
            return True
        time.sleep(0.1)
    return False


def main() -> int:
    env = base_environment()
    lock = run_lock(env)
    if lock is None:
        return 1
    for problem in (
        ensure_redis(env.get("REDIS_URL", "redis://127.0.0.1:6379/0")),
        ensure_postgres(env.get("DATABASE_URL", "")),
    ):
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 1
    var_dir(env).mkdir(parents=True, exist_ok=True)
    web_port = free_port(int(env.get("PORTAL_PORT", "8000")), "portal")
    env.setdefault("PORTAL_BASE_URL", f"http://127.0.0.1:{web_port}")
    sign_in_children, instructions = sign_in_setup(env)
    env_file = write_env_file(env)

    stopping: list[str] = []
    parent = os.getppid()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.append(signal.Signals(signum).name)

    for signum in STOP_SIGNALS:
        signal.signal(signum, on_signal)

    print("Migrating the database …", flush=True)
    if manage(env, "migrate", "--no-input", "-v", "0", check=False).returncode:
        print("error: the database could not be migrated (see above); check DATABASE_URL.", file=sys.stderr)
        return 1
    if sign_in_children:
        manage(env, "ensure_demo_teams", "-v", "0")
    children = [
        *sign_in_children,
        Child("worker", [PYTHON, "manage.py", "rqworker", *QUEUES, "--with-scheduler"]),
        # Exactly one periodic scheduler: certificate checks and the reconcile.
        Child("scheduler", [PYTHON, "manage.py", "scheduler", "provisioning.cron"]),
        Child("web", [PYTHON, "manage.py", "runserver", f"127.0.0.1:{web_port}", "--noreload"], port=web_port),
    ]
    try:
        for child in children:
            if stopping:
                return 0
            print(f"Starting the {child.name} …", flush=True)
            start(child, env)
            if child.port and not wait_for_port(child.port, 30):
                print(f"error: {child.name} did not start on port {child.port}", file=sys.stderr)
                return 1
        # Indexes that were ready before this run come back up; stuck ones get their job again.
        manage(env, "reconcile_indexes", check=False)
        print(f"\n  Portal:  http://127.0.0.1:{web_port}/", flush=True)
        for line in instructions:
            print(f"  {line}", flush=True)
        if env_file:
            print(f"  Settings for manage.py in a second shell: {env_file}", flush=True)
        print("  Stop with Ctrl-C (indexes are stopped too and come back on the next run).\n", flush=True)
        while not stopping:
            for child in children:
                if child.process and child.process.poll() is not None:
                    print(f"error: {child.name} exited with {child.process.returncode}", file=sys.stderr)
                    return 1
            if os.getppid() != parent:  # `make` was killed (SIGTERM to its pid alone): stop too
                stopping.append("parent exited")
            time.sleep(0.5)
        return 0
    finally:
        # A second signal while stopping must not cut the cleanup short.
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        if stopping:
            say(f"Stopping ({stopping[0]}) …")
        stop(children)
        manage(env, "stop_local_indexes", check=False)
        lock.close()


if __name__ == "__main__":
    sys.exit(main())
