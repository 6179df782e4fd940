"""Certificate inspection: what an index presents on its HTTPS port, and whether clients trust it.

Two handshakes per host. The first runs with verification off so the leaf can be read whatever
is wrong with it (issuer, subject, SANs, validity, key type); the second verifies the chain
against the system trust store or a given CA (the local driver's Caddy CA) for trusted yes/no and
OpenSSL's reason. The host name is matched against the SANs here, so a wrong host and a broken
chain are told apart. Every socket operation runs against one deadline, polled non-blocking, so a
server that stalls (or trickles bytes) mid-handshake cannot hold a check past its timeout.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtensionOID

from provisioning.models import PROBLEM_STATUSES, CertificateStatus


class _Timeout(Exception):
    pass


@dataclass
class CertificateInfo:
    issuer: str
    subject: str
    sans: list[str]
    not_before: datetime
    not_after: datetime
    key_type: str
    serial: str
    sha256: str
    pem: str


@dataclass
class CertificateResult:
    host: str
    port: int
    server_name: str
    status: str
    reason: str
    checked_at: datetime
    elapsed_ms: int
    trusted: bool | None = None
    hostname_match: bool | None = None
    certificate: CertificateInfo | None = None
    days_left: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def is_problem(self) -> bool:
        return self.status in PROBLEM_STATUSES

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CertificateTarget:
    """One endpoint of a fleet check. `key` is the caller's handle (an index id)."""

    key: object
    host: str
    port: int
    server_name: str | None = None
    ca_pem: str | None = None


# --- reading a certificate


def _name(name: x509.Name) -> str:
    return name.rfc4514_string()


def _key_type(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA-{key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA-{key.key_size}"
    return type(key).__name__


def _sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return []
    names: list[str] = list(ext.get_values_for_type(x509.DNSName))
    names += [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]
    return names


def certificate_info(der: bytes) -> CertificateInfo:
    cert = x509.load_der_x509_certificate(der)
    return CertificateInfo(
        issuer=_name(cert.issuer),
        subject=_name(cert.subject),  # empty for Caddy's internal leaf certificates
        sans=_sans(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_type=_key_type(cert),
        serial=format(cert.serial_number, "x"),
        sha256=cert.fingerprint(hashes.SHA256()).hex(),
        pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
    )


def hostname_matches(hostname: str, sans: list[str]) -> bool:
    """RFC 6125 matching against the SANs only (no CN fallback, as browsers and OpenSSL do
    with a SAN present): a wildcard stands for exactly the leftmost label."""
    hostname = hostname.rstrip(".").lower()
    try:
        address = ipaddress.ip_address(hostname)
    except ValueError:
        address = None
    for san in sans:
        if address is not None:
            try:
                if ipaddress.ip_address(san) == address:
                    return True
            except ValueError:
                pass
            continue
        pattern = san.rstrip(".").lower()
        if pattern == hostname:
            return True
        if pattern.startswith("*.") and "." in hostname:
            head, _, rest = hostname.partition(".")
            if head and rest == pattern[2:]:
                return True
    return False


def warning_window(info: CertificateInfo, warning_days: int) -> timedelta:
    """How close to expiry a certificate is flagged: `warning_days`, or a sixth of its lifetime
    when that is shorter. Short-lived certificates (Caddy's internal 12-hour leaves) are renewed
    automatically when a third of their life remains, so a fixed 14 days would flag them always;
    a sixth left means a renewal was missed. For a 90-day Let's Encrypt certificate it is 14 days."""
    return min(timedelta(days=warning_days), (info.not_after - info.not_before) / 6)


def _duration(delta: timedelta) -> str:
    if delta >= timedelta(days=2):
        return f"{delta.days} days"
    hours, rest = divmod(int(delta.total_seconds()), 3600)
    return f"{hours} h {rest // 60} min"


# --- talking to the server


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _Timeout
    return left


def _connect(host: str, port: int, deadline: float) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=_remaining(deadline))
    sock.setblocking(False)
    return sock


def _wait(sock: socket.socket, event: int, deadline: float) -> None:
    # poll, not select: a fleet check may hold file descriptors above FD_SETSIZE.
    poller = select.poll()
    poller.register(sock, event)
    if not poller.poll(_remaining(deadline) * 1000):
        raise _Timeout


def _handshake(host: str, port: int, server_name: str, context: ssl.SSLContext, deadline: float) -> ssl.SSLSocket:
    raw = _connect(host, port, deadline)
    try:
        tls = context.wrap_socket(raw, server_hostname=server_name, do_handshake_on_connect=False)
    except BaseException:
        raw.close()
        raise
    try:
        while True:
            try:
                tls.do_handshake()
                return tls
            except ssl.SSLWantReadError:
                _wait(tls, select.POLLIN, deadline)
            except ssl.SSLWantWriteError:
                _wait(tls, select.POLLOUT, deadline)
    except BaseException:
        tls.close()
        raise


def _unverified_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _verifying_context(ca_pem: str | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # The host name is matched separately, so a chain problem and a wrong host are both seen.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    if ca_pem:
        context.load_verify_locations(cadata=ca_pem)
    else:
        context.load_default_certs()
    return context


def _describe_tls_error(exc: ssl.SSLError) -> tuple[str, str]:
    """Map a failed unverified handshake to (status, reason)."""
    # OpenSSL's reason codes read well once spelled out: TLSV1_ALERT_INTERNAL_ERROR.
    text = str(exc.reason or exc).replace("_", " ").lower()
    if "wrong version number" in text or "record layer" in text:
        return CertificateStatus.NO_TLS, f"The server answered, but not with TLS ({text})."
    if "alert" in text:
        # A TLS server with no certificate for this name (Caddy before issuance, or an
        # unknown SNI) ends the handshake with an alert.
        return CertificateStatus.NOT_ISSUED, f"The server speaks TLS but presented no certificate ({text})."
    return CertificateStatus.NO_TLS, f"The TLS handshake failed ({text})."


def inspect_certificate(
    host: str,
    port: int = 443,
    *,
    server_name: str | None = None,
    ca_pem: str | None = None,
    timeout: float = 5.0,
    warning_days: int = 14,
    now: datetime | None = None,
) -> CertificateResult:
    """Connect to host:port with SNI `server_name` (default: host) and report the certificate's
    status. Never raises for anything the server does; returns within about `timeout` seconds
    (the budget covers connect and both handshakes)."""
    server_name = server_name or host
    started = time.monotonic()
    deadline = started + timeout
    now = now or datetime.now(UTC)

    def result(status: str, reason: str, **fields) -> CertificateResult:
        return CertificateResult(
            host=host,
            port=port,
            server_name=server_name,
            status=status,
            reason=reason,
            checked_at=now,
            elapsed_ms=int((time.monotonic() - started) * 1000),
            **fields,
        )

    # 1. Read the leaf, whatever is wrong with it.
    try:
        tls = _handshake(host, port, server_name, _unverified_context(), deadline)
    except _Timeout:
        return result(CertificateStatus.UNREACHABLE, f"No TLS handshake within {timeout:g} s (the server stalled).")
    except TimeoutError:
        return result(CertificateStatus.UNREACHABLE, f"No TCP connection within {timeout:g} s.")
    except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError):  # before SSLError: EOF is one
        return result(CertificateStatus.NO_TLS, "The server closed the connection during the TLS handshake.")
    except ssl.SSLError as exc:
        return result(*_describe_tls_error(exc))
    except ConnectionRefusedError:
        return result(CertificateStatus.UNREACHABLE, f"Connection to {host}:{port} refused.")
    except socket.gaierror as exc:
        return result(CertificateStatus.UNREACHABLE, f"The host name {host} does not resolve ({exc.strerror}).")
    except OSError as exc:
        return result(CertificateStatus.UNREACHABLE, f"Cannot connect to {host}:{port} ({exc.strerror or exc}).")
    try:
        der = tls.getpeercert(binary_form=True)
    finally:
        tls.close()
    if not der:
        return result(CertificateStatus.NOT_ISSUED, "The server completed a TLS handshake without a certificate.")
    try:
        info = certificate_info(der)
    except ValueError as exc:
        return result(CertificateStatus.UNTRUSTED, f"The certificate cannot be parsed ({exc}).")
    days_left = (info.not_after - now) // timedelta(days=1)
    matches = hostname_matches(server_name, info.sans)

    # 2. Verify the chain against the trust anchor.
    trusted: bool | None
    try:
        _handshake(host, port, server_name, _verifying_context(ca_pem), deadline).close()
        trusted, trust_reason = True, ""
    except ssl.SSLCertVerificationError as exc:
        trusted, trust_reason = False, exc.verify_message or str(exc)
    except (_Timeout, TimeoutError):
        trusted, trust_reason = None, f"The verifying handshake did not finish within {timeout:g} s."
    except OSError as exc:  # ssl.SSLError is an OSError
        trusted, trust_reason = None, f"The verifying handshake failed ({exc})."

    fields = {"trusted": trusted, "hostname_match": matches, "certificate": info, "days_left": days_left}
    expiry = f"{info.not_after:%Y-%m-%d %H:%M} UTC"
    if now < info.not_before:
        return result(
            CertificateStatus.NOT_YET_VALID, f"Not valid before {info.not_before:%Y-%m-%d %H:%M} UTC.", **fields
        )
    if now >= info.not_after:
        return result(CertificateStatus.EXPIRED, f"Expired on {expiry}.", **fields)
    if trusted is False:
        return result(CertificateStatus.UNTRUSTED, f"Not trusted: {trust_reason}.", **fields)
    if trusted is None:
        return result(CertificateStatus.UNREACHABLE, trust_reason, **fields)
    if not matches:
        names = ", ".join(info.sans) or "no names"
        return result(CertificateStatus.WRONG_HOST, f"Issued for {names}, not {server_name}.", **fields)
    left = info.not_after - now
    if left <= warning_window(info, warning_days):
        return result(CertificateStatus.EXPIRING, f"Expires in {_duration(left)}, on {expiry}.", **fields)
    return result(CertificateStatus.VALID, f"Valid until {expiry}.", **fields)


def inspect_fleet(
    targets: list[CertificateTarget],
    *,
    concurrency: int = 32,
    timeout: float = 5.0,
    warning_days: int = 14,
) -> dict[object, CertificateResult]:
    """Check every target with at most `concurrency` connections at once. Returns one result per
    target key. Each check is bounded by `timeout`; the whole run by the number of rounds times
    that, plus a margin (a check stuck in DNS resolution is reported as unreachable)."""
    if not targets:
        return {}
    now = datetime.now(UTC)
    rounds = -(-len(targets) // concurrency)
    overall = rounds * timeout + timeout + 1.0
    results: dict[object, CertificateResult] = {}
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="cert-check")
    try:
        futures = {
            pool.submit(
                inspect_certificate,
                t.host,
                t.port,
                server_name=t.server_name,
                ca_pem=t.ca_pem,
                timeout=timeout,
                warning_days=warning_days,
                now=now,
            ): t
            for t in targets
        }
        done, not_done = wait(futures, timeout=overall)
        for future in done:
            results[futures[future].key] = future.result()
        for future in not_done:
            future.cancel()
            t = futures[future]
            results[t.key] = CertificateResult(
                host=t.host,
                port=t.port,
                server_name=t.server_name or t.host,
                status=CertificateStatus.UNREACHABLE,
                reason=f"The check did not finish within the fleet's {overall:g} s budget.",
                checked_at=now,
                elapsed_ms=int(overall * 1000),
            )
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return results
