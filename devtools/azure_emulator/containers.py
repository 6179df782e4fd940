"""Running a container group's containers as local processes, so what the Azure driver deploys
really runs: the project's own programs stand in for the images.

Each group gets what ACI gives it, built from Linux primitives (needs root, as the emulator has
in CI and on the dev machine):
- its own network namespace with a loopback interface, so the containers of one group share
  `127.0.0.1` (as in ACI) and two groups never fight over ports 80, 443 or 8080;
- its public ports (`ipAddress.ports`) forwarded from free ports on the host's 127.0.0.1 (see
  `ports`); the group's FQDN is resolved to 127.0.0.1 by the test clients;
- "the internet": the host's loopback ports listed in `egress_ports` (e.g. pebble's ACME
  directory) are reachable from inside the namespace at the same 127.0.0.1 address and port;
- each Azure File volume mounted: the container's paths below the mount path are rewritten, in
  its command and environment, to the share's folder, the very files the File service serves;
- only the container's declared environment (plus PATH, HOME and LANG), never the emulator's;
- stdout and stderr captured for the ACI logs API.

Programs are mapped by name (`PROGRAMS`); any other command is refused with a clear message.
Read-only mounts are not enforced. Every process is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .http import iso_now
from .state import ContainerGroup, EmulatorState

CLONE_NEWNET = 0x40000000
STOP_TIMEOUT_SECONDS = 5.0
VENV_BIN = Path(sys.prefix) / "bin"
# Program name in a container command -> the local executable that stands in for the image.
PROGRAMS: dict[str, Path] = {
    "caddy": VENV_BIN / "caddy",
    "pypi-server": VENV_BIN / "pypi-server",
    "python": Path(sys.executable),
}

_libc = ctypes.CDLL(None, use_errno=True)


class CommandRefused(Exception):
    """The emulator cannot run this container (unknown program, unsupported volume)."""


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


class Namespace:
    """A network namespace held open by one `sleep` process, with its loopback interface up."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--", "sh", "-c", "ip link set lo up && echo up && exec sleep infinity"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        assert self.holder.stdout is not None
        if self.holder.stdout.readline().strip() != b"up":
            error = self.holder.stderr.read().decode(errors="replace") if self.holder.stderr else ""
            self.close()
            raise CommandRefused(f"Cannot create a network namespace (root is needed): {error.strip()}")
        self.path = f"/proc/{self.holder.pid}/ns/net"

    def socket(self) -> socket.socket:
        """A new TCP socket that lives in this namespace (the calling thread returns home)."""
        home = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        inside = os.open(self.path, os.O_RDONLY)
        try:
            _setns(inside)
            try:
                return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            finally:
                _setns(home)
        finally:
            os.close(inside)
            os.close(home)

    def close(self) -> None:
        _stop_process(self.holder)
        for stream in (self.holder.stdout, self.holder.stderr):
            if stream is not None:
                stream.close()


def _stop_process(process: subprocess.Popen) -> None:
    """SIGTERM by PID, then SIGKILL if it has not ended within STOP_TIMEOUT_SECONDS."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            process.wait()


class Forwarder:
    """Accepts TCP connections on `listener` and joins each to a socket from `connect`."""

    def __init__(self, listener: socket.socket, connect: Callable[[], socket.socket]) -> None:
        self.listener = listener
        self.connect = connect
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, name="emulator-forward", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._join, args=(client,), daemon=True).start()

    def _join(self, client: socket.socket) -> None:
        try:
            upstream = self.connect()
        except OSError:
            client.close()
            return
        with self.lock:
            if self.closed:
                client.close()
                upstream.close()
                return
            self.open.update((client, upstream))
        back = threading.Thread(target=self._pump, args=(upstream, client), daemon=True)
        back.start()
        self._pump(client, upstream)
        back.join()
        with self.lock:
            self.open.difference_update((client, upstream))
        client.close()
        upstream.close()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            sockets = [self.listener, *self.open]
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@dataclass
class Process:
    popen: subprocess.Popen
    log_path: Path
    started: str


@dataclass
class GroupRuntime:
    namespace: Namespace
    folder: Path  # logs and scratch space, removed with the group
    ports: dict[int, int] = field(default_factory=dict)  # public port -> host loopback port
    forwarders: list[Forwarder] = field(default_factory=list)
    processes: dict[str, Process] = field(default_factory=dict)


def _map_path(value: str, mounts: list[tuple[str, Path]]) -> str:
    """`value` with a container path below one of `mounts` (longest first) made a host path;
    also the value part of `--option=/path`."""
    for mount, folder in mounts:
        if value == mount or value.startswith(mount.rstrip("/") + "/"):
            return str(folder) + value[len(mount.rstrip("/")) :]
    name, equals, rest = value.partition("=")
    if equals and rest.startswith("/"):
        return f"{name}={_map_path(rest, mounts)}"
    return value


class ContainerRuntime:
    """The processes of every container group in an emulator. Called by `ArmService` with the
    state lock held."""

    def __init__(
        self, state: EmulatorState, *, egress_ports: Iterable[int] = (), host_ports: dict[int, int] | None = None
    ) -> None:
        """`host_ports`: {public port: host port} to use when that host port is free (so an ACME
        test server can be told beforehand where to validate); other ports get free ones."""
        self.state = state
        self.egress_ports = tuple(egress_ports)
        self.host_ports = dict(host_ports or {})
        self.folder = Path(tempfile.mkdtemp(prefix="azure-emulator-containers-"))
        self.groups: dict[tuple[str, str, str], GroupRuntime] = {}

    @staticmethod
    def key(group: ContainerGroup) -> tuple[str, str, str]:
        return (group.subscription.lower(), group.resource_group.lower(), group.name.lower())

    # --- Life cycle, driven by ARM.
    def start(self, group: ContainerGroup) -> str:
        """(Re)start every container of `group`; '' or why it cannot run (the deployment fails)."""
        try:
            runtime = self._runtime(group)
            self._stop_processes(runtime)
            for container in group.definition["containers"]:
                runtime.processes[container["name"]] = self._spawn(group, runtime, container)
        except CommandRefused as exc:
            self.remove(self.key(group))
            return str(exc)
        return ""

    def stop(self, group: ContainerGroup) -> None:
        """Stop the processes; the namespace and the port mapping stay (a stopped group keeps
        its FQDN)."""
        runtime = self.groups.get(self.key(group))
        if runtime is not None:
            self._stop_processes(runtime)

    def remove(self, key: tuple[str, str, str]) -> None:
        runtime = self.groups.pop(key, None)
        if runtime is None:
            return
        self._stop_processes(runtime)
        for forwarder in runtime.forwarders:
            forwarder.close()
        runtime.namespace.close()
        shutil.rmtree(runtime.folder, ignore_errors=True)

    def sync(self) -> None:
        """Remove what runs for groups that no longer exist (deleted alone or with their
        resource group)."""
        for key in [k for k in self.groups if k not in self.state.container_groups]:
            self.remove(key)

    def stop_all(self) -> None:
        for key in list(self.groups):
            self.remove(key)

    def close(self) -> None:
        self.stop_all()
        shutil.rmtree(self.folder, ignore_errors=True)

    # --- What clients and ARM read.
    def ports(self, group: ContainerGroup) -> dict[int, int]:
        runtime = self.groups.get(self.key(group))
        return dict(runtime.ports) if runtime else {}

    def container_state(self, group: ContainerGroup, name: str) -> dict | None:
        """The instance view state of a container whose process has ended, else None."""
        runtime = self.groups.get(self.key(group))
        process = runtime.processes.get(name) if runtime else None
        if process is None or process.popen.poll() is None:
            return None
        code = process.popen.returncode
        return {
            "state": "Terminated",
            "exitCode": code,
            "startTime": process.started,
            "detailStatus": "Completed" if code == 0 else "Error",
        }

    def logs(self, group: ContainerGroup, name: str, tail: int | None = None) -> str:
        runtime = self.groups.get(self.key(group))
        process = runtime.processes.get(name) if runtime else None
        if process is None or not process.log_path.exists():
            return ""
        text = process.log_path.read_text(errors="replace")
        if tail is not None:
            text = "".join(text.splitlines(keepends=True)[-tail:]) if tail > 0 else ""
        return text

    def describe(self) -> dict:
        """Every running group: its port mapping and its processes (the control API shows it)."""
        return {
            "/".join(key): {
                "ports": {str(p): host for p, host in runtime.ports.items()},
                "namespace_pid": runtime.namespace.holder.pid,
                "containers": {
                    name: {"pid": p.popen.pid, "exit_code": p.popen.poll(), "started": p.started}
                    for name, p in runtime.processes.items()
                },
            }
            for key, runtime in self.groups.items()
        }

    def pids(self) -> list[int]:
        """Every process the runtime started and has not stopped (namespace holders included)."""
        found = []
        for runtime in self.groups.values():
            found.append(runtime.namespace.holder.pid)
            found.extend(p.popen.pid for p in runtime.processes.values() if p.popen.poll() is None)
        return found

    # --- Building blocks.
    def _runtime(self, group: ContainerGroup) -> GroupRuntime:
        key = self.key(group)
        wanted = sorted(int(p["port"]) for p in (group.definition.get("ipAddress") or {}).get("ports") or [])
        runtime = self.groups.get(key)
        if runtime is not None and sorted(runtime.ports) == wanted:
            return runtime
        self.remove(key)
        folder = self.folder / uuid.uuid4().hex
        folder.mkdir()
        runtime = GroupRuntime(namespace=Namespace(), folder=folder)
        self.groups[key] = runtime
        namespace = runtime.namespace
        for port in wanted:
            listener = self._listen(self.host_ports.get(port, 0))
            runtime.ports[port] = listener.getsockname()[1]
            runtime.forwarders.append(Forwarder(listener, self._dialer(namespace, port)))
        for port in self.egress_ports:
            listener = namespace.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen(64)
            runtime.forwarders.append(
                Forwarder(listener, lambda port=port: socket.create_connection(("127.0.0.1", port), timeout=10))
            )
        return runtime

    @staticmethod
    def _listen(port: int) -> socket.socket:
        try:
            return socket.create_server(("127.0.0.1", port))
        except OSError:  # taken (e.g. by a second group): any free port
            return socket.create_server(("127.0.0.1", 0))

    @staticmethod
    def _dialer(namespace: Namespace, port: int) -> Callable[[], socket.socket]:
        def dial() -> socket.socket:
            sock = namespace.socket()
            try:
                sock.settimeout(10)
                sock.connect(("127.0.0.1", port))
                sock.settimeout(None)
            except OSError:
                sock.close()
                raise
            return sock

        return dial

    def _mounts(self, group: ContainerGroup, runtime: GroupRuntime, container: dict) -> list[tuple[str, Path]]:
        volumes = {v["name"]: v for v in group.definition.get("volumes") or []}
        mounts = []
        for mount in container["properties"].get("volumeMounts") or []:
            volume = volumes[mount["name"]]
            azure_file = volume.get("azureFile")
            if azure_file is not None:
                account = self.state.account(azure_file["storageAccountName"])
                share = account.shares.get(azure_file["shareName"]) if account else None
                if share is None:
                    raise CommandRefused(f"Azure File volume '{volume['name']}' has no share to mount.")
                folder = share.root
            elif "emptyDir" in volume:
                folder = runtime.folder / "volumes" / volume["name"]
                folder.mkdir(parents=True, exist_ok=True)
            else:
                raise CommandRefused(
                    f"The emulator mounts Azure File and emptyDir volumes only, not '{volume['name']}'."
                )
            mounts.append((mount["mountPath"], folder))
        return sorted(mounts, key=lambda m: len(m[0]), reverse=True)

    def _spawn(self, group: ContainerGroup, runtime: GroupRuntime, container: dict) -> Process:
        name = container["name"]
        command = container["properties"].get("command") or []
        if not command:
            raise CommandRefused(
                f"Container '{name}' has no command: the emulator runs commands, it cannot run the image's entry point."
            )
        program = PROGRAMS.get(command[0])
        if program is None:
            raise CommandRefused(
                f"The emulator cannot run '{command[0]}' (container '{name}'): only "
                + ", ".join(sorted(PROGRAMS))
                + " stand in for images."
            )
        mounts = self._mounts(group, runtime, container)
        home = runtime.folder / "home" / name
        home.mkdir(parents=True, exist_ok=True)
        environment = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
        for variable in container["properties"].get("environmentVariables") or []:
            value = variable.get("value", variable.get("secureValue", ""))
            environment[variable["name"]] = _map_path(value, mounts)
        argv = [str(program), *(_map_path(arg, mounts) for arg in command[1:])]
        log_path = runtime.folder / f"{name}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                ["nsenter", f"--net={runtime.namespace.path}", "--", *argv],
                cwd=home,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return Process(popen=popen, log_path=log_path, started=iso_now())

    @staticmethod
    def _stop_processes(runtime: GroupRuntime) -> None:
        for process in runtime.processes.values():
            _stop_process(process.popen)
        runtime.processes.clear()
