"""The real index server (provisioning/index_server.py) as a child process, with the files the
portal writes for it: manifest.json, tokens.json and the packages folder. Used by the tests and
by bench/serve.py."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from provisioning.index_server import METADATA_DIR, METADATA_SUFFIX, hash_token

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "provisioning" / "index_server.py"
UPLOAD_URL = "https://portal.example/indexes/7/packages/legacy/"
# The interpreter that runs the server: this one by default; point it at another environment with
# only pypiserver and waitress (as on the stock image's Python 3.10) to check the module there.
SERVER_PYTHON = os.environ.get("INDEX_SERVER_PYTHON", sys.executable)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_json_atomically(path: Path, data: dict) -> None:
    """As the portal writes: a temporary file renamed over the old one."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(data))
    os.replace(temp, path)


def wheel_metadata(wheel: Path) -> bytes:
    """The METADATA of a wheel: what the portal extracts at upload for PEP 658."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return archive.read(name)


def manifest_entry(
    path: Path,
    project: str,
    version: str,
    *,
    yanked: bool | str = False,
    requires_python: str | None = None,
    with_metadata: bool = True,
) -> dict:
    """The manifest line for a file in the packages folder; for a wheel, its metadata file is
    written to packages/metadata/ (unless `with_metadata` is false)."""
    metadata_sha256 = None
    if with_metadata and path.name.endswith(".whl"):
        metadata = wheel_metadata(path)
        folder = path.parent / METADATA_DIR
        folder.mkdir(exist_ok=True)
        (folder / (path.name + METADATA_SUFFIX)).write_bytes(metadata)
        metadata_sha256 = hashlib.sha256(metadata).hexdigest()
    return {
        "filename": path.name,
        "project": project,
        "version": version,
        "sha256": sha256_of(path),
        "size": path.stat().st_size,
        "upload_time": "2026-12-03T05:00:00.000000Z",
        "requires_python": requires_python,
        "yanked": yanked,
        "metadata_sha256": metadata_sha256,
    }


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass
class IndexServer:
    """One running index server on 127.0.0.1 with its folder (manifest, tokens, packages)."""

    folder: Path
    port: int = 0
    process: subprocess.Popen | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def packages(self) -> Path:
        return self.folder / "packages"

    @property
    def manifest_path(self) -> Path:
        return self.folder / "manifest.json"

    @property
    def tokens_path(self) -> Path:
        return self.folder / "tokens.json"

    @property
    def access_log_path(self) -> Path:
        return self.folder / "server.stdout"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def index_url(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}/simple/"

    def write_manifest(self, files: list[dict], generation: str = "1") -> None:
        write_json_atomically(
            self.manifest_path,
            {"version": 1, "generation": generation, "index": "demo", "upload_url": UPLOAD_URL, "files": files},
        )

    def write_tokens(self, passwords: dict[str, str]) -> None:
        """Users and their plain passwords; tokens.json gets their hashes."""
        self.tokens = dict(passwords)
        hashes = {user: hash_token(password) for user, password in passwords.items()}
        write_json_atomically(self.tokens_path, {"version": 1, "tokens": hashes})

    def start(self, *extra_args: str, port: int | None = None) -> None:
        self.packages.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        with open(self.access_log_path, "wb") as out, open(self.folder / "server.stderr", "wb") as err:
            self.process = subprocess.Popen(
                [SERVER_PYTHON, str(SERVER), "--host", "127.0.0.1", "--port", str(self.port),
                 "--manifest", str(self.manifest_path), "--tokens", str(self.tokens_path),
                 "--packages", str(self.packages), *extra_args],
                stdout=out, stderr=err, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"index server exited: {self.stderr()}")
            try:
                if self.request("GET", "/health", auth=None).status == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"index server did not answer /health: {self.stderr()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stderr(self) -> str:
        return (self.folder / "server.stderr").read_text(errors="replace")

    def access_log(self, *, containing: str = "", seconds: float = 3) -> str:
        """The access log so far; with `containing`, once that text is in it (a line is written
        when its response has been sent, so just after the client got it)."""
        deadline = time.monotonic() + seconds
        while True:
            log = self.access_log_path.read_text(errors="replace")
            if containing in log or time.monotonic() > deadline:
                return log
            time.sleep(0.02)

    def request(
        self,
        method: str,
        path: str,
        *,
        auth: tuple[str, str] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        source: str | None = None,
    ) -> Response:
        """One request on a new connection; `source` binds the client side to another loopback
        address (127.0.0.2 is not the trusted proxy)."""
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=10, source_address=(source, 0) if source else None
        )
        try:
            all_headers = dict(headers or {})
            if auth is not None:
                all_headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
            connection.request(method, path, body=body, headers=all_headers)
            reply = connection.getresponse()
            return Response(reply.status, reply.headers, reply.read())
        finally:
            connection.close()
