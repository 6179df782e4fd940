"""Let's Encrypt's ACME test server (Debian's `pebble` package) as a stand-in for Let's Encrypt:
started with its own configuration on free loopback ports, stopped by its PID.

Its ACME API is served over HTTPS with a certificate from a trustme CA written next to the
configuration (`tls_ca_path`: what Caddy's `acme_ca_root` names). The CA that signs the issued
certificates is created by pebble at each start; `issuer_root_pem()` reads it from the management
API. Challenges: PEBBLE_VA_ALWAYS_VALID=1 marks every authorization valid without connecting
back. The index's FQDN (`*.azurecontainer.io`) cannot resolve here and pebble validates one
fixed httpPort/tlsPort for all hosts, while each container group gets its own mapped ports; what
the tests check is the issuance itself, its storage on the share, the chain and the host name.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import trustme

PEBBLE = "/usr/bin/pebble"
ISSUED_MARKER = "Issued certificate serial"


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


class Pebble:
    """`with Pebble(folder) as pebble: ...` or start()/stop()."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.acme_port = 0
        self.management_port = 0
        self.process: subprocess.Popen | None = None

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
        self.acme_port, self.management_port = _free_port(), _free_port()
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.acme_port}",
                "managementListenAddress": f"127.0.0.1:{self.management_port}",
                "certificate": str(self.folder / "tls-cert.pem"),
                "privateKey": str(self.folder / "tls-key.pem"),
                "httpPort": 5002,
                "tlsPort": 5001,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        (self.folder / "pebble-config.json").write_text(json.dumps(config))
        environment = {
            "PATH": "/usr/bin:/bin",
            "PEBBLE_VA_ALWAYS_VALID": "1",
            "PEBBLE_VA_NOSLEEP": "1",
            # Pebble rejects 5% of nonces by default to exercise clients' retries; not here.
            "PEBBLE_WFE_NONCEREJECT": "0",
        }
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [PEBBLE, "-config", str(self.folder / "pebble-config.json")],
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

    def __enter__(self) -> Pebble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
