"""Reaching a container group that the emulator runs, by its FQDN: `*.azurecontainer.io` names
do not resolve on this machine, so clients get a resolver override that maps each group's FQDN
to 127.0.0.1 and its public ports to the host ports the emulator forwards (what DNS and the
group's public IP do in Azure). TLS still sees the FQDN: SNI and host name checks are real.

- In this process: `with fqdn_override(emulator.public_ports): ...` (socket.getaddrinfo).
- In a child process (pip, a worker): `child_environment(emulator.url, emulator.ca_path, folder)`
  adds a sitecustomize that installs the same override, asking the emulator's control API.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

PortMap = dict[str, dict[int, int]]  # FQDN -> {public port: host loopback port}
_URL_ENV = "AZURE_EMULATOR_RESOLVER_URL"
_CA_ENV = "AZURE_EMULATOR_RESOLVER_CA"

# Installed in a child Python through PYTHONPATH: asks the emulator's control API for the port
# mapping at each lookup of an emulated FQDN, so groups created after the child started are found.
_SITECUSTOMIZE = """
import json, os, socket, ssl, urllib.request

_original = socket.getaddrinfo


def _ports(host):
    context = ssl.create_default_context(cafile=os.environ["__CA__"])
    with urllib.request.urlopen(os.environ["__URL__"] + "/_emulator/containers", context=context, timeout=10) as r:
        found = json.load(r)["public_ports"].get(host)
    return {int(p): q for p, q in found.items()} if found else None


def _getaddrinfo(host, port, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    mapped = _ports(name) if isinstance(name, str) and name.endswith(".azurecontainer.io") else None
    if mapped is None:
        return _original(host, port, *args, **kwargs)
    number = int(port) if port not in (None, "") else 443
    return _original("127.0.0.1", mapped.get(number, number), *args, **kwargs)


socket.getaddrinfo = _getaddrinfo
""".replace("__URL__", _URL_ENV).replace("__CA__", _CA_ENV)


def _resolver(ports: Callable[[], PortMap], original: Callable) -> Callable:
    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        mapped = ports().get(name) if isinstance(name, str) and name.endswith(".azurecontainer.io") else None
        if mapped is None:
            return original(host, port, *args, **kwargs)
        number = int(port) if port not in (None, "") else 443
        return original("127.0.0.1", mapped.get(number, number), *args, **kwargs)

    return getaddrinfo


@contextlib.contextmanager
def fqdn_override(ports: Callable[[], PortMap]) -> Iterator[None]:
    """Resolve the emulator's FQDNs in this process while the block runs; `ports` is read at
    each lookup, so groups created inside the block are found."""
    original = socket.getaddrinfo
    socket.getaddrinfo = _resolver(ports, original)
    try:
        yield
    finally:
        socket.getaddrinfo = original


def child_environment(
    emulator_url: str, emulator_ca: Path, folder: Path, environment: dict[str, str] | None = None
) -> dict[str, str]:
    """`environment` (default: this one) with the override installed for a child Python, which
    reads the mapping from the emulator at `emulator_url` (trusting `emulator_ca`)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    env = dict(os.environ if environment is None else environment)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), env.get("PYTHONPATH", "")) if p)
    env[_URL_ENV] = emulator_url
    env[_CA_ENV] = str(emulator_ca)
    return env
