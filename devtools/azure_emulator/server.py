"""The emulator's HTTPS server: one port serving ARM, the File service, an Entra-shaped token
endpoint and a control API (/_emulator/...) for tests and the standalone run."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import struct
import threading
import time
from dataclasses import fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import trustme

from .arm import ArmService
from .containers import ContainerRuntime
from .faults import Fault, FaultBook, RequestRecord
from .files import FileService, storage_error
from .http import Request, Response, arm_error, json_response
from .identity import IdentityService
from .state import EmulatorState

logger = logging.getLogger(__name__)

DEFAULT_TENANT_ID = "72f988bf-0000-4000-8000-0000000e0001"
DEFAULT_CLIENT_ID = "00000000-0000-4000-8000-00000000c11e"
DEFAULT_CLIENT_SECRET = "emulator-client-secret"
DEFAULT_SUBSCRIPTION_ID = "00000000-0000-4000-8000-000000005ab5"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    emulator: AzureEmulator

    def handle_error(self, request, client_address) -> None:
        # Clients that time out or drop connections are part of the tests; keep it quiet.
        logger.debug("emulator connection error from %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("emulator: " + format, *args)

    def do_GET(self) -> None:
        self._serve()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_GET

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        emulator = self.server.emulator
        started = time.monotonic()
        split = urlsplit(self.path)
        body = self._read_body()
        host = f"https://{self.server.server_address[0]!s}:{self.server.server_address[1]}"
        request = Request(
            method=self.command,
            path=split.path,
            raw_query=split.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            base_url=emulator.public_url or host,
        )
        service = emulator.service_for(request.path)
        record = RequestRecord(
            service=service,
            method=request.method,
            path=request.path,
            query=request.raw_query,
            started=time.time(),
            client_request_id=request.header("x-ms-client-request-id"),
        )
        fault = emulator.faults.take(request.method, request.path, request.raw_query) if service != "control" else None
        response: Response | None = None
        if fault is not None:
            record.fault = fault.id
            if fault.delay:
                time.sleep(fault.delay)
            if fault.drop:
                record.status = 0
                record.duration = time.monotonic() - started
                emulator.faults.record(record)
                self._reset_connection()
                return
            if fault.status is not None:
                response = emulator.fault_response(service, request, fault)
        if response is None:
            try:
                response = emulator.dispatch(service, request)
            except Exception as exc:  # an emulator bug should read as a 500, not a hang
                logger.exception("emulator failed on %s %s", request.method, request.path)
                if service == "file":
                    response = storage_error(500, "InternalError", f"Emulator error: {exc}")
                else:
                    response = arm_error(500, "InternalServerError", f"Emulator error: {exc}")
        record.status = response.status
        record.duration = time.monotonic() - started
        # Logged before answering, so a client that has its answer also finds it in the log, and
        # logged even when the client gave up waiting (its request was still carried out).
        if service != "control":
            emulator.faults.record(record)
        self._send(request, response)
        record.duration = time.monotonic() - started

    def _send(self, request: Request, response: Response) -> None:
        self.send_response(response.status)
        headers = dict(response.headers)
        if request.method == "HEAD" or response.head_only:
            headers.setdefault("Content-Length", str(len(response.body)))
            body = b""
        else:
            headers["Content-Length"] = str(len(response.body))
            body = response.body
        headers.setdefault("x-ms-request-id", request.header("x-ms-client-request-id") or "emulator")
        client_id = request.header("x-ms-client-request-id")
        if client_id:
            headers.setdefault("x-ms-client-request-id", client_id)
        for name, value in headers.items():
            self.send_header(name, value)
        # Headers and body in one write: two small writes meet the client's delayed ACK and
        # stall ~40 ms per request, which real Azure does not do.
        self._headers_buffer.append(  # type: ignore[attr-defined]  # http.server's own buffer
            b"\r\n" + body
        )
        self.flush_headers()
        self.wfile.flush()

    def _reset_connection(self) -> None:
        """Drop the connection with a TCP reset and no answer ("connection reset by peer")."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass


class AzureEmulator:
    """ARM + Azure Files + token endpoint over HTTPS with a trustme CA written to `cert_dir`.

    In-process use (pytest): `with AzureEmulator(cert_dir=tmp) as emu: ...`; inspect `emu.state`,
    `emu.requests()`, inject faults with `emu.inject(...)`. Standalone: `python -m
    devtools.azure_emulator` and the control API under /_emulator/.
    """

    def __init__(
        self,
        *,
        cert_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        tenant_id: str = DEFAULT_TENANT_ID,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        subscription_id: str = DEFAULT_SUBSCRIPTION_ID,
        run_containers: bool = False,
        egress_ports: tuple[int, ...] = (),
        host_ports: dict[int, int] | None = None,
    ) -> None:
        """`run_containers`: start each container group's containers as local processes (see
        containers.py); `egress_ports`: host loopback ports those processes may reach;
        `host_ports`: {public port: preferred host port} for the first group."""
        self.cert_dir = Path(cert_dir)
        self.host = host
        self.port = port
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.subscription_id = subscription_id
        self.state = EmulatorState(storage_dir=self.cert_dir / "files")
        self.state.clients[client_id] = client_secret
        self.state.tenant_id = tenant_id
        self.faults = FaultBook()
        self.public_url = ""
        self.arm = ArmService(self.state, self.file_endpoint)
        if run_containers:
            self.arm.runtime = ContainerRuntime(self.state, egress_ports=egress_ports, host_ports=host_ports)
        self.files = FileService(self.state)
        self.identity = IdentityService(self.state)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- Life cycle.
    def start(self) -> AzureEmulator:
        self.cert_dir.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        server_cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
        ca.cert_pem.write_to_path(str(self.ca_path))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_cert.configure_cert(context)
        server = _Server((self.host, self.port), _Handler)
        server.emulator = self
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        self._server = server
        self.port = server.server_address[1]
        self.public_url = f"https://{self.host}:{self.port}"
        self._thread = threading.Thread(target=server.serve_forever, name="azure-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self.state.lock:
            if self.arm.runtime is not None:
                self.arm.runtime.close()
            self.state.remove_storage()

    def __enter__(self) -> AzureEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- Addresses a client needs.
    @property
    def ca_path(self) -> Path:
        return self.cert_dir / "ca.pem"

    @property
    def url(self) -> str:
        return self.public_url

    @property
    def file_endpoint_template(self) -> str:
        """Path-style account URLs (the SDK takes the account name from the path on 127.0.0.1)."""
        return self.url + "/{account}"

    def file_endpoint(self, account: str) -> str:
        return f"{self.url}/{account}/"

    def environment(self) -> dict[str, str]:
        """Variables that point azure-identity (EnvironmentCredential) at this emulator."""
        return {
            "AZURE_TENANT_ID": self.tenant_id,
            "AZURE_CLIENT_ID": self.client_id,
            "AZURE_CLIENT_SECRET": self.client_secret,
            "AZURE_AUTHORITY_HOST": self.url,
        }

    # --- Routing.
    @staticmethod
    def service_for(path: str) -> str:
        lowered = path.lower()
        if lowered.startswith("/_emulator"):
            return "control"
        if lowered.startswith("/subscriptions/"):
            return "arm"
        if "/oauth2/" in lowered or "/.well-known/" in lowered or "/discovery/" in lowered:
            return "identity"
        return "file"

    def dispatch(self, service: str, request: Request) -> Response:
        if service == "arm" or (service == "file" and request.method == "DELETE"):
            response = self.arm.handle(request) if service == "arm" else self.files.handle(request)
            self.state.sweep_storage()  # a deleted share, account or resource group takes its files along
            return response
        if service == "file":
            return self.files.handle(request)
        if service == "identity":
            return self.identity.handle(request)
        return self._control(request)

    def fault_response(self, service: str, request: Request, fault: Fault) -> Response:
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        status = fault.status or 500
        code = fault.code or {429: "TooManyRequests", 500: "InternalServerError", 503: "ServerBusy"}.get(
            status, "Injected"
        )
        message = fault.message or f"Injected fault {fault.id}: {status} {code}."
        if service == "file":
            response = storage_error(status, code, message, head=request.method == "HEAD")
            response.headers.update(headers)
            return response
        return arm_error(status, code, message, headers)

    # --- Python API for tests.
    def inject(self, method: str = "*", path: str = ".*", **kwargs: object) -> Fault:
        """Add a fault (see `Fault`), e.g. inject("PUT", "/containerGroups/", status=429, retry_after=1)."""
        return self.faults.add(Fault(method=method, path=path, **kwargs))  # type: ignore[arg-type]

    def requests(self, service: str | None = None) -> list[RequestRecord]:
        return self.faults.requests(service)

    def clear_log(self) -> None:
        self.faults.clear_log()

    def snapshot(self) -> dict:
        return self.state.snapshot()

    def public_ports(self) -> dict[str, dict[int, int]]:
        """{FQDN: {public port: host loopback port}} of every group whose containers run here;
        clients resolve the FQDN to 127.0.0.1 and connect to the mapped port."""
        runtime = self.arm.runtime
        if runtime is None:
            return {}
        found = {}
        with self.state.lock:
            for group in self.state.container_groups.values():
                fqdn = (self.arm._group_body(group)["properties"].get("ipAddress") or {}).get("fqdn")
                ports = runtime.ports(group)
                if fqdn and ports:
                    found[fqdn] = ports
        return found

    def running_pids(self) -> list[int]:
        """The processes started for container groups that still run (empty without runtime)."""
        with self.state.lock:
            return self.arm.runtime.pids() if self.arm.runtime is not None else []

    def configure(self, **options: object) -> None:
        """Behaviour switches: core_quota, taken_storage_names, denied_actions, group_failures,
        storage_polls, group_polls, restart_polls, throttled_registries, unregistered_providers,
        taken_dns_labels, crash_loops."""
        sets = ("taken_storage_names", "denied_actions", "throttled_registries", "unregistered_providers")
        with self.state.lock:
            for name, value in options.items():
                if name in (*sets, "taken_dns_labels"):
                    value = set(value)  # type: ignore[call-overload]
                if not hasattr(self.state, name):
                    raise ValueError(f"unknown emulator option {name!r}")
                setattr(self.state, name, value)

    def reset(self) -> None:
        with self.state.lock:
            if self.arm.runtime is not None:
                self.arm.runtime.stop_all()
            self.state.reset()
        self.state.clients[self.client_id] = self.client_secret
        self.state.tenant_id = self.tenant_id
        self.faults.clear()
        self.faults.clear_log()

    # --- The control API (standalone runs).
    def _control(self, request: Request) -> Response:
        route = request.path.rstrip("/").lower()
        if route == "/_emulator/requests" and request.method == "GET":
            service = dict(parse_qsl(request.raw_query)).get("service")
            return json_response(200, [r.as_dict() for r in self.requests(service)])
        if route == "/_emulator/requests" and request.method == "DELETE":
            self.clear_log()
            return Response(204)
        if route == "/_emulator/faults" and request.method == "POST":
            data = request.json()
            allowed = {f.name for f in fields(Fault)} - {"hits", "id"}
            fault = self.faults.add(Fault(**{k: v for k, v in data.items() if k in allowed}))
            return json_response(201, fault.as_dict())
        if route == "/_emulator/faults" and request.method == "GET":
            return json_response(200, [f.as_dict() for f in self.faults.faults])
        if route == "/_emulator/faults" and request.method == "DELETE":
            self.faults.clear()
            return Response(204)
        if route == "/_emulator/state" and request.method == "GET":
            return json_response(200, self.snapshot())
        if route == "/_emulator/containers" and request.method == "GET":
            with self.state.lock:
                running = self.arm.runtime.describe() if self.arm.runtime is not None else {}
            return json_response(200, {"groups": running, "public_ports": self.public_ports()})
        if route == "/_emulator/config" and request.method == "POST":
            try:
                self.configure(**request.json())
            except (ValueError, TypeError) as exc:
                return json_response(400, {"error": str(exc)})
            return Response(204)
        if route == "/_emulator/reset" and request.method == "POST":
            self.reset()
            return Response(204)
        if route == "/_emulator" and request.method == "GET":
            return json_response(
                200,
                {"url": self.url, "ca": str(self.ca_path), **self.environment(), "subscription": self.subscription_id},
            )
        return json_response(404, {"error": "unknown control route"})


def dump_json(data: object) -> str:
    return json.dumps(data, indent=2, sort_keys=True)
