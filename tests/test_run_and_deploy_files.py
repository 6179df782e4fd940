"""The README's run command really starts the portal (and stops everything it started), and the
production files are well-formed (there is no Docker engine here, so compose is parsed)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
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


def _processes_under(folder: Path) -> list[int]:
    """Index processes (Caddy, pypiserver): their environment is allow-listed, their command line
    names the index folder."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if str(folder).encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


class MakeRun:
    """`make run` in its own session with this test's database, Redis db, ports and folders; its
    output is collected by a thread so the pipe never fills."""

    def __init__(self, tmp_path: Path, argv: list[str] | None = None) -> None:
        self.port = _free_port()
        self.tmp_path = tmp_path
        self.marker = f"PORTAL_SMOKE_{self.port}"
        self.env_file = tmp_path / "make-run.env"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST"))}
        env.update(
            DATABASE_URL=f"sqlite:///{tmp_path / 'portal.sqlite3'}",
            PORTAL_VAR_DIR=str(tmp_path / "var"),
            LOCAL_DRIVER_DATA_DIR=str(tmp_path / "indexes"),
            PORTAL_PORT=str(self.port),
            ENTRA_PROVIDER_PORT=str(_free_port()),
            PORTAL_ENV_FILE=str(self.env_file),
            REDIS_URL=os.environ["REDIS_URL"],
        )
        env[self.marker] = "1"
        self.env = env
        self.output: list[str] = []
        self.process = subprocess.Popen(
            argv or ["make", "run"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)

    @property
    def text(self) -> str:
        return "".join(self.output)

    def wait_until_up(self, seconds: float = 180) -> None:
        deadline = time.monotonic() + seconds
        while "Stop with Ctrl-C" not in self.text and self.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert f"http://127.0.0.1:{self.port}/" in self.text, self.text

    def assert_everything_stopped(self) -> None:
        self.process.wait(timeout=60)
        deadline = time.monotonic() + 15
        while (_processes_with(self.marker) or _processes_under(self.tmp_path)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _processes_with(self.marker) == [], self.text
        assert _processes_under(self.tmp_path) == [], self.text
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
            pass


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("signum", "to_group"),
    [(signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["Ctrl-C to the terminal's process group", "SIGTERM to make alone"],
)
def test_make_run_starts_the_portal_answers_health_and_stops_everything(tmp_path, signum, to_group):
    run = MakeRun(tmp_path)
    try:
        run.wait_until_up()
        with urllib.request.urlopen(f"http://127.0.0.1:{run.port}/health/", timeout=10) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{run.port}/", timeout=10) as response:
            assert response.url.endswith("/") or "login" in response.url  # the sign-in page, not an error
        assert len(_processes_with(run.marker)) >= 3  # make, run.py, worker, web (and sign-in provider)
    finally:
        if to_group:
            os.killpg(run.process.pid, signum)
        else:
            os.kill(run.process.pid, signum)
    run.assert_everything_stopped()


def readme_bash_lines() -> list[str]:
    """Every command line of the README's ```bash blocks, comments removed."""
    readme = (ROOT / "README.md").read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.S):
        for line in block.splitlines():
            command = line.split("  #", 1)[0].strip()
            if command and not command.startswith("#"):
                lines.append(command)
    return lines


@pytest.mark.e2e
def test_readme_commands_work_as_written_from_a_second_shell_and_sighup_stops_everything(tmp_path):
    lines = readme_bash_lines()
    assert lines[:2] == ["make run", "make test"]  # make test is this suite; make run is started here
    run = MakeRun(tmp_path)
    try:
        run.wait_until_up()
        # A second shell: nothing of the first one's environment but where make run wrote its .env.
        second_shell = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "TMPDIR"}}
        second_shell["PORTAL_ENV_FILE"] = str(run.env_file)

        second_run = subprocess.run(
            [sys.executable, "-m", "devtools.run"], cwd=ROOT, env=run.env, capture_output=True, text=True, timeout=60
        )
        assert second_run.returncode == 1
        assert "already using this database" in second_run.stderr

        for command in lines[2:]:
            if "devtools.azure_emulator" in command:
                emulator_env = {**second_shell, "AZURE_EMULATOR_PORT": str(_free_port())}
                emulator = subprocess.Popen(
                    shlex.split(command), cwd=ROOT, env=emulator_env, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, text=True, start_new_session=True,
                )  # fmt: skip
                try:
                    first_line = emulator.stdout.readline()
                    assert "Azure emulator listening on https://127.0.0.1:" in first_line, first_line
                finally:
                    os.killpg(emulator.pid, signal.SIGTERM)
                    emulator.wait(timeout=30)
                continue
            done = subprocess.run(
                shlex.split(command), cwd=ROOT, env=second_shell, capture_output=True, text=True, timeout=300
            )
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
            if "create_index" in command:
                created = json.loads(done.stdout)
                assert created["state"] == "ready" and Path(created["ca_path"]).is_file()
                assert created["ca_path"].startswith(str(tmp_path / "var"))
    finally:
        os.killpg(run.process.pid, signal.SIGHUP)  # the terminal closing
    run.assert_everything_stopped()
    assert "Stopping (SIGHUP)" in run.text


def test_the_azure_emulator_default_port_is_not_the_sign_in_providers():
    from devtools.azure_emulator.__main__ import DEFAULT_PORT

    provider_default = re.search(r"^ENTRA_PROVIDER_PORT=(\d+)", (ROOT / ".env.example").read_text(), re.M)
    assert DEFAULT_PORT != int(provider_default.group(1))


def test_first_install_shows_progress_instead_of_running_pip_quietly():
    makefile = (ROOT / "Makefile").read_text()
    install = makefile[makefile.index("$(STAMP): requirements.txt") : makefile.index("## Run the portal")]

    assert "--quiet" not in install and "-q " not in install
    assert "Installing the requirements" in install


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


@pytest.mark.e2e
def test_manage_py_migrates_into_a_new_var_dir_without_a_raw_sqlite_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL"}}
    env.update(PORTAL_VAR_DIR=str(tmp_path / "new" / "var"), DEBUG="1")

    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "new" / "var" / "portal.sqlite3").is_file()


def test_manage_py_reads_only_an_env_file_make_run_wrote_and_the_environment_wins(tmp_path):
    from portal.envfile import ENV_FILE_MARKER

    written = tmp_path / "written.env"
    written.write_text(f"{ENV_FILE_MARKER}\nDEBUG=1\nPORTAL_BASE_URL=http://127.0.0.1:8123\n")
    by_hand = tmp_path / "compose.env"
    by_hand.write_text("DEBUG=1\n")
    script = "from django.conf import settings; print(settings.DEBUG, settings.PORTAL_BASE_URL)"

    def settings_with(env_file: Path, **extra: str) -> str:
        env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "PORTAL_BASE_URL"}}
        env.update(PORTAL_ENV_FILE=str(env_file), SECRET_KEY="x" * 50, **extra)
        done = subprocess.run(
            [sys.executable, "manage.py", "shell", "--no-imports", "-c", script], cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        return done.stdout.strip() or done.stderr[-500:]

    assert settings_with(written) == "True http://127.0.0.1:8123"
    assert settings_with(written, DEBUG="0").startswith("False")  # production's DEBUG=0 wins
    assert settings_with(by_hand).startswith("False")  # a compose .env is not read by manage.py
