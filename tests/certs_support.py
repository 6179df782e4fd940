"""Real TLS (and not-quite-TLS) endpoints on loopback for certificate tests and bench/cert_fleet.py.

One asyncio loop in a background thread serves any number of listening sockets, so hundreds of
endpoints cost no threads. Every endpoint listens on 127.0.0.1 with an OS-chosen port.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import tempfile
import threading
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def server_context(leaf: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(context)
    return context


def self_signed_context(hostname: str = "localhost") -> ssl.SSLContext:
    """A certificate that is its own issuer, made with cryptography (trustme only makes CAs)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
    return context


def alerting_context(leaf: trustme.LeafCert) -> ssl.SSLContext:
    """Ends every handshake with an internal-error alert, as Caddy does for a name it holds no
    certificate for (before issuance)."""
    context = server_context(leaf)
    context.sni_callback = lambda sock, name, ctx: ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
    return context


class Endpoints:
    """Listening sockets served from one event loop in a daemon thread. Use as a context manager."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.servers: list[asyncio.base_events.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._listeners: list[socket.socket] = []
        self.thread = threading.Thread(target=self.loop.run_forever, name="tls-endpoints", daemon=True)
        self.thread.start()

    def __enter__(self) -> Endpoints:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    async def _listen(self, handler, ssl_context: ssl.SSLContext | None) -> int:
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ssl_context, backlog=512)
        self.servers.append(server)
        return server.sockets[0].getsockname()[1]

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Keep the connection open until the client goes away.
        self._writers.add(writer)
        try:
            while await reader.read(4096):
                pass
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _plain_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(4096)
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _stall(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Read the ClientHello, send the first bytes of a ServerHello record, then trickle one
        # byte now and then forever: a per-read socket timeout alone would never fire.
        self._writers.add(writer)
        try:
            await reader.read(4096)
            writer.write(b"\x16\x03\x03\x00\x7a\x02")
            while True:
                await asyncio.sleep(0.2)
                writer.write(b"\x00")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def tls(self, context: ssl.SSLContext) -> int:
        return self._run(self._listen(self._hold, context))

    def plain(self) -> int:
        return self._run(self._listen(self._plain_http, None))

    def stalled(self) -> int:
        return self._run(self._listen(self._stall, None))

    def alerting(self, context: ssl.SSLContext) -> int:
        """A blocking server thread: asyncio's SSL transport drops the alert a failed server-side
        handshake should send, and the alert is what a client sees from Caddy."""
        listener = socket.create_server(("127.0.0.1", 0))
        self._listeners.append(listener)

        def serve() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                conn.settimeout(5)
                try:
                    context.wrap_socket(conn, server_side=True).close()
                except (OSError, ssl.SSLError):
                    conn.close()

        threading.Thread(target=serve, name="tls-alerting", daemon=True).start()
        return listener.getsockname()[1]

    def close(self) -> None:
        for listener in self._listeners:
            listener.close()

        async def shutdown() -> None:
            for server in self.servers:
                server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        try:
            self._run(shutdown())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)
            self.loop.close()


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
