"""The local runtime: each index's containers (Caddy and the index server) as processes on this machine.

The three shares are three folders of the local share store (`local_store`), inside the index's
folder LOCAL_DRIVER_DATA_DIR/<id>-<name>/, which also holds pid files and logs. The runtime finds an
index's processes by their command lines, which name paths inside that folder (local_processes),
so any worker can stop, restart or bring back an index that another process started, including
a process whose starter was killed before it could record it. Pid files are kept as a record for
people. Every process is started in its own session and stopped by its process group.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import os
import shutil
import socket
import ssl
import subprocess
import time
from http.client import HTTPSConnection
from pathlib import Path

from django.conf import settings

from provisioning.drivers import local_processes
from provisioning.drivers.base import DriverError
from provisioning.drivers.local_store import LocalShareStore
from provisioning.drivers.runtime import (
    ContainerState,
    ContainerStatus,
    DeployStep,
    IndexRuntime,
    IndexStatus,
    RunState,
)
from provisioning.pause import pause_point
from provisioning.spec import SHARE_CERTS, ContainerSpec, IndexSpec, Placement

logger = logging.getLogger(__name__)

CA_PATH = "caddy/pki/authorities/local/root.crt"  # inside the certs share (Caddy's data dir)
# The only variables of the worker's environment an index process inherits (plus its container's).
CHILD_ENV_NAMES = frozenset({"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR"})
CHILD_ENV_PREFIXES = ("LC_",)

# Popen objects of children started by this process, kept so they can be reaped (no zombies).
_children: dict[int, subprocess.Popen] = {}


def _reap() -> None:
    for pid, proc in list(_children.items()):
        if proc.poll() is not None:
            del _children[pid]


def _port_range() -> range:
    low, _, high = settings.LOCAL_DRIVER_PORT_RANGE.partition("-")
    return range(int(low), int(high) + 1)


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class LocalRuntime(IndexRuntime):
    name = "local"

    def __init__(self, store: LocalShareStore) -> None:
        self.store = store  # the shares are its folders; the configuration is written through it

    # Read on every use, not at construction: the runtime instance lives as long as the process.
    @property
    def data_dir(self) -> Path:
        return self.store.data_dir

    @property
    def bin_dir(self) -> Path:
        return Path(settings.LOCAL_DRIVER_BIN_DIR)

    # --- where things are
    def index_dir(self, index_id: int, name: str) -> Path:
        return self.store.index_dir(index_id, name)

    def _dir(self, spec: IndexSpec) -> Path:
        return self.index_dir(spec.index_id, spec.name)

    # --- placement
    def reserve(self, *, index_id: int, name: str, previous: dict | None) -> Placement:
        if previous:
            return Placement.from_dict(previous)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / ".ports.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one allocation at a time across processes
            taken: set[int] = set()
            for placement_file in self.data_dir.glob("*/placement.json"):
                with contextlib.suppress(OSError, ValueError):
                    data = json.loads(placement_file.read_text())
                    taken |= {v for k, v in data.items() if k.endswith("_port")}
            ports: list[int] = []
            for port in _port_range():
                if port not in taken and _port_is_free(port):
                    ports.append(port)
                    if len(ports) == 3:
                        break
            if len(ports) < 3:
                raise DriverError(
                    f"No free ports left in LOCAL_DRIVER_PORT_RANGE ({settings.LOCAL_DRIVER_PORT_RANGE}): "
                    "delete an index or widen the range.",
                    permanent=True,
                )
            placement = Placement(
                hostname="localhost",
                https_port=ports[0],
                http_port=ports[1],
                server_port=ports[2],
                tls="internal",
            )
            index_dir = self.index_dir(index_id, name)
            index_dir.mkdir(parents=True, exist_ok=True)
            (index_dir / "placement.json").write_text(json.dumps(placement.as_dict()))
        return placement

    # --- building and tearing down
    def deploy_steps(self, spec: IndexSpec) -> list[DeployStep]:
        return [
            DeployStep("shares", "Create the three shares", lambda: self._create_shares(spec)),
            DeployStep(
                "config", "Write the Caddy and index server configuration", lambda: self.store.write_config(spec)
            ),
            DeployStep("pypiserver", "Start the index server", lambda: self._start_servers(spec), rerun=True),
            DeployStep("caddy", "Start Caddy with HTTPS", lambda: self._start_caddy(spec), rerun=True),
            DeployStep("health", "Check the index answers over HTTPS", lambda: self._wait_healthy(spec), rerun=True),
        ]

    def teardown_steps(self, spec: IndexSpec) -> list[DeployStep]:
        return [
            DeployStep("stop", "Stop Caddy and pypiserver", lambda: self._stop_all(spec)),
            DeployStep("remove-shares", "Remove the shares", lambda: self._remove_dir(spec)),
            DeployStep("confirm", "Confirm nothing is left", lambda: self._confirm_gone(spec)),
        ]

    def _create_shares(self, spec: IndexSpec) -> None:
        for share in spec.shares:
            self.store.share_dir(spec, share.name).mkdir(parents=True, exist_ok=True)
        for sub in ("run", "logs"):
            (self._dir(spec) / sub).mkdir(parents=True, exist_ok=True)

    def _start_servers(self, spec: IndexSpec) -> None:
        """The containers behind the public ports (the index server), each answering on its port."""
        for container in spec.containers:
            if not set(container.ports) & set(spec.public_ports):
                self._ensure_process(spec, container)

    def _start_caddy(self, spec: IndexSpec) -> None:
        """The containers on the public ports (Caddy)."""
        for container in spec.containers:
            if set(container.ports) & set(spec.public_ports):
                self._ensure_process(spec, container)

    def _remove_dir(self, spec: IndexSpec) -> None:
        shutil.rmtree(self._dir(spec), ignore_errors=True)

    def _confirm_gone(self, spec: IndexSpec) -> None:
        left = [f"pid {p.pid} ({p.command[:80]})" for p in local_processes.processes_under(self._dir(spec))]
        if left or self._dir(spec).exists():
            raise DriverError(f"Teardown left something behind: {', '.join(left) or self._dir(spec)}")

    # --- processes (found through /proc: local_processes)
    def _pidfile(self, spec: IndexSpec, name: str) -> Path:
        return self._dir(spec) / "run" / f"{name}.pid"

    def _container_pids(self, spec: IndexSpec, container: ContainerSpec) -> list[int]:
        """Every live process running this container's command for this index (normally one)."""
        _reap()
        argv, _ = self._local_argv(spec, container)
        return [p.pid for p in local_processes.processes_under(self._dir(spec)) if local_processes.runs(p, argv)]

    @staticmethod
    def _listen_ports(spec: IndexSpec, container: ContainerSpec) -> list[int]:
        """The ports the container's process must listen on: those its command names after a
        `--...port` option, and the HTTPS port if it publishes it."""
        ports = []
        args = container.command
        for option, value in itertools.pairwise(args):
            if option.startswith("-") and option.endswith("port") and value.isdigit():
                ports.append(int(value))
        for arg in args:
            option, _, value = arg.partition("=")
            if option.startswith("--") and option.endswith("port") and value.isdigit():
                ports.append(int(value))
        if spec.placement.https_port in container.ports:
            ports.append(spec.placement.https_port)
        return sorted(set(ports))

    def _running_alone(self, spec: IndexSpec, container: ContainerSpec) -> bool:
        """Exactly one copy of the container runs, and it holds its ports."""
        pids = self._container_pids(spec, container)
        return len(pids) == 1 and self._answers(spec, container, pids[0])

    def _answers(self, spec: IndexSpec, container: ContainerSpec, pid: int) -> bool:
        return all(local_processes.owns_port(pid, port) for port in self._listen_ports(spec, container))

    def _local_argv(self, spec: IndexSpec, container: ContainerSpec) -> tuple[list[str], dict[str, str]]:
        """The container's command and environment with container paths mapped to the folders."""
        mounts = sorted(container.mounts, key=lambda m: len(m.mount_path), reverse=True)

        def local(value: str) -> str:
            for mount in mounts:
                if value == mount.mount_path or value.startswith(mount.mount_path + "/"):
                    return str(self.store.share_dir(spec, mount.share)) + value[len(mount.mount_path) :]
            return value

        program, *args = container.command
        argv = [str(self.bin_dir / program), *(local(a) for a in args)]
        # An allow-list, not a deny-list: the portal's secrets (ENTRA_*, AZURE_*, SECRET_KEY,
        # DATABASE_URL, ...) never reach an index process, whatever new ones are added later.
        env = {k: v for k, v in os.environ.items() if k in CHILD_ENV_NAMES or k.startswith(CHILD_ENV_PREFIXES)}
        env.update({k: local(v) for k, v in container.environment})
        return argv, env

    def _ensure_process(self, spec: IndexSpec, container: ContainerSpec) -> None:
        """Exactly one process of the container, holding its ports. A copy that does not hold
        them (still starting when its worker was killed, or failed to bind), or a second copy,
        is stopped first."""
        running = self._container_pids(spec, container)
        if len(running) == 1 and self._answers(spec, container, running[0]):
            self._record(spec, container, running[0])  # its starter may have died before recording it
            return
        if running:
            logger.info("Stopping %s old copies of %s for index %s", len(running), container.name, spec.name)
            local_processes.stop(running)
        self._check_ports_free(spec, container)
        argv, env = self._local_argv(spec, container)
        if not Path(argv[0]).exists():
            raise DriverError(f"{argv[0]} is not installed (pip install -r requirements.txt).", permanent=True)
        proc = self._spawn(spec, container, argv, env)
        self._wait_answering(spec, container, proc)

    def _check_ports_free(self, spec: IndexSpec, container: ContainerSpec) -> None:
        for port in self._listen_ports(spec, container):
            for pid in local_processes.port_owners(port):
                owner = next((p.command for p in local_processes.processes() if p.pid == pid), "?")
                raise DriverError(f"Port {port} for {container.name} is held by another process: pid {pid} ({owner}).")

    def _spawn(
        self, spec: IndexSpec, container: ContainerSpec, argv: list[str], env: dict[str, str]
    ) -> subprocess.Popen:
        """Start the process and record its pid at once (written whole, then renamed)."""
        log = open(self._dir(spec) / "logs" / f"{container.name}.log", "ab")  # noqa: SIM115 - child owns it
        with log:
            proc = subprocess.Popen(
                argv,
                cwd=self._dir(spec),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _children[proc.pid] = proc
        pause_point(f"{spec.index_id}-spawned-{container.name}")
        self._record(spec, container, proc.pid)
        return proc

    def _record(self, spec: IndexSpec, container: ContainerSpec, pid: int) -> None:
        """Write the pid file whole (a reader never sees half a number)."""
        pidfile = self._pidfile(spec, container.name)
        with contextlib.suppress(OSError):
            if pidfile.read_text() == str(pid):
                return
        temp = pidfile.with_suffix(".tmp")
        temp.write_text(str(pid))
        os.replace(temp, pidfile)

    def _wait_answering(self, spec: IndexSpec, container: ContainerSpec, proc: subprocess.Popen) -> None:
        """Wait until the process we started owns each of its listening ports."""
        ports = self._listen_ports(spec, container)
        deadline = time.monotonic() + self._timeout()
        while not self._answers(spec, container, proc.pid):
            if proc.poll() is not None:
                raise DriverError(f"{container.name} exited at start: {self._log_tail(spec, container.name)}")
            if time.monotonic() > deadline:
                raise DriverError(
                    f"{container.name} (pid {proc.pid}) did not listen on {ports} within {self._timeout():.0f} s."
                )
            time.sleep(0.02)

    def _log_tail(self, spec: IndexSpec, name: str, lines: int = 5) -> str:
        try:
            text = (self._dir(spec) / "logs" / f"{name}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])

    def _stop_all(self, spec: IndexSpec) -> None:
        """Stop every process of the index, recorded or not (found by its command line)."""
        local_processes.stop([p.pid for p in local_processes.processes_under(self._dir(spec))])
        _reap()
        for container in spec.containers:
            self._pidfile(spec, container.name).unlink(missing_ok=True)

    def stop_everything(self) -> int:
        """Stop every process under LOCAL_DRIVER_DATA_DIR, including those of indexes the
        database no longer knows (stop_local_indexes). Returns how many were running."""
        pids = [p.pid for p in local_processes.processes_under(self.data_dir)]
        local_processes.stop(pids)
        _reap()
        return len(pids)

    def _timeout(self) -> float:
        return float(settings.INDEX_HEALTH_TIMEOUT_SECONDS)

    def _https_health(self, spec: IndexSpec) -> tuple[int, str]:
        context = ssl.create_default_context(cadata=self.ca_certificate_pem(spec) or None)
        conn = HTTPSConnection("localhost", spec.placement.https_port, context=context, timeout=5)
        try:
            conn.request("GET", "/health")
            response = conn.getresponse()
            return response.status, response.read(200).decode(errors="replace")
        finally:
            conn.close()

    def _wait_healthy(self, spec: IndexSpec) -> None:
        deadline = time.monotonic() + self._timeout()
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                status, _ = self._https_health(spec)
                if status == 200:
                    return
                last = f"HTTP {status}"
            except (OSError, ssl.SSLError) as exc:
                last = str(exc) or exc.__class__.__name__
            time.sleep(0.05)
        raise DriverError(f"The index did not answer https://localhost:{spec.placement.https_port}/health: {last}")

    # --- running indexes
    def restart(self, spec: IndexSpec) -> None:
        self._stop_all(spec)
        self._deploy(spec)

    def ensure_running(self, spec: IndexSpec) -> bool:
        if all(self._running_alone(spec, c) for c in spec.containers):
            return False
        self._deploy(spec)
        return True

    def _deploy(self, spec: IndexSpec) -> None:
        for step in self.deploy_steps(spec):
            step.run()

    def status(self, spec: IndexSpec) -> IndexStatus:
        if not self._dir(spec).exists():
            return IndexStatus(state=RunState.MISSING, detail="The index folder does not exist.")
        procs = local_processes.processes_under(self._dir(spec))  # one scan of /proc per index

        def state(container: ContainerSpec) -> ContainerState:
            argv = self._local_argv(spec, container)[0]
            running = any(local_processes.runs(p, argv) for p in procs)
            return ContainerState.RUNNING if running else ContainerState.TERMINATED

        containers = [ContainerStatus(name=c.name, state=state(c)) for c in spec.containers]
        running = sum(c.state == ContainerState.RUNNING for c in containers)
        if running == len(containers):
            return IndexStatus(state=RunState.RUNNING, containers=containers)
        state = RunState.STOPPED if running == 0 else RunState.FAILED
        stopped = ", ".join(c.name for c in containers if c.state != ContainerState.RUNNING)
        return IndexStatus(state=state, containers=containers, detail=f"Not running: {stopped}")

    def halt(self, spec: IndexSpec) -> None:
        """Stop the processes, keep the shares (also used when the laptop run shuts down)."""
        self._stop_all(spec)

    def ca_certificate_pem(self, spec: IndexSpec) -> str | None:
        try:
            return (self.store.share_dir(spec, SHARE_CERTS) / CA_PATH).read_text()
        except OSError:
            return None
