"""The README's run command really starts the portal (and stops everything it started), and the
production files are well-formed (there is no Docker engine here, so compose is parsed)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _processes_with(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.e2e
def test_make_run_starts_the_portal_answers_health_and_stops_everything_on_ctrl_c(tmp_path):
    port = _free_port()
    marker = f"PORTAL_SMOKE_{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST"))}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'portal.sqlite3'}",
        PORTAL_VAR_DIR=str(tmp_path),
        LOCAL_DRIVER_DATA_DIR=str(tmp_path / "indexes"),
        PORTAL_PORT=str(port),
        REDIS_URL=os.environ["REDIS_URL"],
        SMOKE_MARKER=marker,
    )
    env[marker] = "1"
    make = subprocess.Popen(
        ["make", "run"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    output: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = make.stdout.readline()
            if not line and make.poll() is not None:
                break
            output.append(line)
            if "Stop with Ctrl-C" in line:
                break
        assert any(f"http://127.0.0.1:{port}/" in line for line in output), "".join(output)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/", timeout=10) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.url.endswith("/") or "login" in response.url  # the sign-in page, not an error
        assert len(_processes_with(marker)) >= 3  # make, run.py, worker, web (and sign-in provider)
    finally:
        os.killpg(make.pid, signal.SIGINT)
        make.wait(timeout=60)
    deadline = time.monotonic() + 15
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_with(marker) == []
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_docker_compose_defines_web_worker_redis_postgres_with_health_checks():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"web", "worker", "redis", "postgres"} <= set(services)
    for name in ("web", "worker", "redis", "postgres"):
        assert "healthcheck" in services[name], name
    assert "gunicorn" in services["web"]["command"]
    assert "rqworker" in services["worker"]["command"]
    assert services["web"]["environment"]["DEBUG"] == "0"
    for name, service in services.items():
        image = service.get("image", "")
        assert not image.endswith(":latest"), f"{name} uses :latest"
    # Nothing secret is written into the file itself.
    text = (ROOT / "docker-compose.yml").read_text().lower()
    assert "secret_key=" not in text and "client_secret" not in text


def test_env_example_documents_every_setting_the_portal_reads():
    import re

    read = set()
    for path in ROOT.glob("portal/**/*.py"):
        read |= set(re.findall(r'env_(?:str|bool|int|float|list)\(\s*"([A-Z0-9_]+)"', path.read_text()))
    documented = set(re.findall(r"^#?\s*([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    assert read - documented == set()
