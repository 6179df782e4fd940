"""`make run`: the whole portal on this machine with its embedded defaults.

Starts (and on Ctrl-C stops, by PID) everything the portal needs here: the machine's Redis if
it is down, the database schema, the local sign-in provider, one RQ worker with the scheduler,
and the web server; brings back indexes that were ready before; prints where to go.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from devtools.services import ensure_postgres, ensure_redis, reachable

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


@dataclass
class Child:
    name: str
    argv: list[str]
    port: int | None = None
    process: subprocess.Popen | None = None


def free_port(preferred: int) -> int:
    for port in range(preferred, preferred + 100):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise SystemExit(f"No free port near {preferred}.")


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
    return Path(env.get("PORTAL_VAR_DIR") or ROOT / "var")


def manage(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=check)


def sign_in_setup(env: dict[str, str]) -> tuple[list[Child], list[str]]:
    """Children and instructions for signing in on this machine (the local Entra-shaped provider)."""
    # --- Entra sign-in (issue 4): a configured ENTRA_AUTHORITY (a real tenant) wins.
    if env.get("ENTRA_AUTHORITY"):
        return [], [f"Sign in: with Microsoft Entra ID ({env['ENTRA_AUTHORITY']})."]
    from devtools.entra_provider.demo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT_ID

    port = free_port(int(env.get("ENTRA_PROVIDER_PORT", "8443")))
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
    manage(env, "ensure_demo_teams", "-v", "0")
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


def start(child: Child, env: dict[str, str]) -> None:
    child.process = subprocess.Popen(child.argv, cwd=ROOT, env=env, start_new_session=True)


def stop(children: list[Child]) -> None:
    for child in reversed(children):
        if child.process and child.process.poll() is None:
            os.killpg(child.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for child in children:
        if child.process is None:
            continue
        try:
            child.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
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
    for problem in (
        ensure_redis(env.get("REDIS_URL", "redis://127.0.0.1:6379/0")),
        ensure_postgres(env.get("DATABASE_URL", "")),
    ):
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 1
    var_dir(env).mkdir(parents=True, exist_ok=True)
    if manage(env, "migrate", "--no-input", "-v", "0", check=False).returncode:
        print("error: the database could not be migrated (see above); check DATABASE_URL.", file=sys.stderr)
        return 1

    web_port = free_port(int(env.get("PORTAL_PORT", "8000")))
    env.setdefault("PORTAL_BASE_URL", f"http://127.0.0.1:{web_port}")
    sign_in_children, instructions = sign_in_setup(env)
    children = [
        *sign_in_children,
        Child("worker", [PYTHON, "manage.py", "rqworker", "provisioning", "packages", "default", "--with-scheduler"]),
        # Exactly one periodic scheduler: certificate checks and the reconcile.
        Child("scheduler", [PYTHON, "manage.py", "scheduler", "provisioning.cron"]),
        Child("web", [PYTHON, "manage.py", "runserver", f"127.0.0.1:{web_port}", "--noreload"], port=web_port),
    ]
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for child in children:
            start(child, env)
            if child.port and not wait_for_port(child.port, 30):
                print(f"error: {child.name} did not start on port {child.port}", file=sys.stderr)
                return 1
        # Indexes that were ready before this run come back up; stuck ones get their job again.
        manage(env, "reconcile_indexes", check=False)
        print(f"\n  Portal:  http://127.0.0.1:{web_port}/", flush=True)
        for line in instructions:
            print(f"  {line}", flush=True)
        print("  Stop with Ctrl-C (indexes are stopped too and come back on the next run).\n", flush=True)
        while not stopping:
            for child in children:
                if child.process and child.process.poll() is not None:
                    print(f"error: {child.name} exited with {child.process.returncode}", file=sys.stderr)
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        stop(children)
        manage(env, "stop_local_indexes", check=False)


if __name__ == "__main__":
    sys.exit(main())
