"""Let's Encrypt's ACME test server (Debian's `pebble` package) as a stand-in for Let's Encrypt:
started with its own configuration on free loopback ports, stopped by its PID.

Its ACME API is served over HTTPS with a certificate from a trustme CA written next to the
configuration (`tls_ca_path`: what Caddy's `acme_ca_root` names). The CA that signs the issued
certificates is created by pebble at each start; `issuer_root_pem()` reads it from the management
API.

Challenges are validated for real: pebble resolves every name through `-dnsserver`, a small
DNS responder here that answers 127.0.0.1 for any A query (the FQDNs `*.azurecontainer.io` do
not resolve on this machine), and connects to `http_port` (HTTP-01) and `tls_port`
(TLS-ALPN-01): the loopback ports the emulator maps the container group's public 80 and 443 to
(`AzureEmulator(host_ports=...)`). So Caddy answers the challenge itself, through the mapping.
One validation port pair per pebble: one container group at a time gets certificates.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import trustme

PEBBLE = "/usr/bin/pebble"
ISSUED_MARKER = "Issued certificate serial"


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


class LoopbackDns:
    """A UDP DNS responder on 127.0.0.1 that answers every A query with 127.0.0.1 and every
    other query with no records (RFC 1035 wire format, one question per query)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, name="pebble-dns", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                query, client = self.sock.recvfrom(512)
            except OSError:
                return
            with contextlib.suppress(Exception):  # a malformed query gets no answer
                self.sock.sendto(self.answer(query), client)

    @staticmethod
    def answer(query: bytes) -> bytes:
        (ident,) = struct.unpack("!H", query[:2])
        end = 12
        while query[end]:
            end += query[end] + 1
        question = query[12 : end + 5]
        qtype = struct.unpack("!H", query[end + 1 : end + 3])[0]
        records = []
        if qtype == 1:  # A: a pointer to the question's name, class IN, TTL 60, 127.0.0.1
            records.append(struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton("127.0.0.1"))
        header = struct.pack("!HHHHHH", ident, 0x8180, 1, len(records), 0, 0)
        return header + question + b"".join(records)

    def close(self) -> None:
        self.sock.close()


class Pebble:
    """`with Pebble(folder) as pebble: ...` or start()/stop()."""

    def __init__(self, folder: Path, *, http_port: int = 0, tls_port: int = 0) -> None:
        """`http_port`/`tls_port`: where challenges are validated (default: free ports, to be
        given to the emulator as the group's host ports)."""
        self.folder = Path(folder)
        self.http_port = http_port or free_port()
        self.tls_port = tls_port or free_port()
        self.acme_port = 0
        self.management_port = 0
        self.process: subprocess.Popen | None = None
        self.dns: LoopbackDns | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which(PEBBLE) is not None

    @property
    def tls_ca_path(self) -> Path:
        return self.folder / "tls-ca.pem"

    @property
    def log_path(self) -> Path:
        return self.folder / "pebble.log"

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.acme_port}/dir"

    def start(self) -> Pebble:
        self.folder.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        served = ca.issue_cert("127.0.0.1", "localhost")
        ca.cert_pem.write_to_path(str(self.tls_ca_path))
        served.private_key_pem.write_to_path(str(self.folder / "tls-key.pem"))
        served.cert_chain_pems[0].write_to_path(str(self.folder / "tls-cert.pem"))
        self.acme_port, self.management_port = free_port(), free_port()
        self.dns = LoopbackDns()
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.acme_port}",
                "managementListenAddress": f"127.0.0.1:{self.management_port}",
                "certificate": str(self.folder / "tls-cert.pem"),
                "privateKey": str(self.folder / "tls-key.pem"),
                "httpPort": self.http_port,
                "tlsPort": self.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        (self.folder / "pebble-config.json").write_text(json.dumps(config))
        environment = {
            "PATH": "/usr/bin:/bin",
            "PEBBLE_VA_NOSLEEP": "1",
            # Pebble rejects 5% of nonces by default to exercise clients' retries; not here.
            "PEBBLE_WFE_NONCEREJECT": "0",
        }
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [PEBBLE, "-config", str(self.folder / "pebble-config.json"), "-dnsserver", self.dns.address],
                cwd=self.folder,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 15
        while True:
            try:
                self._get(f"https://127.0.0.1:{self.acme_port}/dir")
                return self
            except OSError as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    log = self.log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"pebble did not start: {log}") from exc
                time.sleep(0.05)

    def _get(self, url: str) -> bytes:
        context = ssl.create_default_context(cafile=str(self.tls_ca_path))
        with urllib.request.urlopen(url, context=context, timeout=5) as response:
            return response.read()

    def issuer_root_pem(self) -> str:
        """The root that signs (through an intermediate) every certificate this run issues."""
        return self._get(f"https://127.0.0.1:{self.management_port}/roots/0").decode()

    def issued_count(self) -> int:
        """Certificates issued since start (pebble logs one line per issuance)."""
        return self.log_path.read_text(errors="replace").count(ISSUED_MARKER) if self.log_path.exists() else 0

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
        if self.dns is not None:
            self.dns.close()
            self.dns = None

    def __enter__(self) -> Pebble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
