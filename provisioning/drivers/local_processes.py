"""Finding and stopping the local driver's processes through /proc, whatever the pid files say.

A worker can be killed between starting a process and recording it, so the driver finds its
processes again by their command line (every one names a path inside its index's folder), and
checks that a port is really held by the process it started: its pid owns the listening socket
(/proc/net/tcp* inode → /proc/<pid>/fd). A TCP connect alone can be fooled: inside the kernel's
ephemeral range a connect to a closed loopback port can connect to itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TCP_LISTEN = "0A"


@dataclass(frozen=True)
class Proc:
    pid: int
    argv: tuple[str, ...]

    @property
    def command(self) -> str:
        return " ".join(self.argv)


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in {"Z", "X"}


def processes() -> list[Proc]:
    """Every live process with its command line (zombies and kernel threads left out)."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if raw and alive(int(entry.name)):
            argv = tuple(a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0"))
            found.append(Proc(int(entry.name), argv))
    return found


def processes_under(folder: Path) -> list[Proc]:
    """Processes whose command line names `folder` or a path inside it."""
    root = str(folder).rstrip("/")
    return [p for p in processes() if any(a == root or a.startswith(root + "/") for a in p.argv)]


def runs(proc: Proc, argv: list[str]) -> bool:
    """`proc` is `argv`: same arguments, same program (or a script run by its interpreter)."""
    program, args = argv[0], tuple(argv[1:])
    return proc.argv[len(proc.argv) - len(args) :] == args and program in proc.argv[: len(proc.argv) - len(args)]


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in (PROC / "net" / table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == TCP_LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in (PROC / str(pid) / "fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def port_owners(port: int) -> set[int]:
    """Pids holding a listening TCP socket on `port` (any address)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return set()
    owners = set()
    for entry in PROC.iterdir():
        if entry.name.isdigit() and _socket_inodes(int(entry.name)) & inodes:
            owners.add(int(entry.name))
    return owners


def owns_port(pid: int, port: int) -> bool:
    return bool(_socket_inodes(pid) & _listening_inodes(port))


def stop(pids: list[int], *, grace: float = 5.0) -> None:
    """SIGTERM each process (its whole group when it leads one), SIGKILL what is left after
    `grace` seconds, and return once all are gone."""

    def signal_all(signum: int) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signum)
                else:
                    os.kill(pid, signum)

    signal_all(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    if any(alive(p) for p in pids):
        signal_all(signal.SIGKILL)
        while any(alive(p) for p in pids):
            time.sleep(0.02)
