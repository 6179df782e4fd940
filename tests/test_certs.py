from __future__ import annotations

import datetime as dt
import re
import time

import pytest
import trustme

from provisioning.certs import (
    CertificateTarget,
    hostname_matches,
    inspect_certificate,
    inspect_fleet,
)
from provisioning.models import CertificateStatus
from tests.certs_support import Endpoints, alerting_context, closed_port, self_signed_context, server_context

NOW = dt.datetime.now(dt.UTC)
TIMEOUT = 2.0


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_pem(ca: trustme.CA) -> str:
    return ca.cert_pem.bytes().decode()


@pytest.fixture(scope="module")
def endpoints():
    with Endpoints() as eps:
        yield eps


def check(port: int, ca_pem: str | None, **kwargs):
    started = time.monotonic()
    result = inspect_certificate("localhost", port, ca_pem=ca_pem, timeout=TIMEOUT, warning_days=14, **kwargs)
    elapsed = time.monotonic() - started
    assert elapsed < TIMEOUT + 0.5, f"check took {elapsed:.2f} s"
    assert result.reason
    return result


def test_a_trusted_certificate_for_the_host_is_valid_with_its_details_read(endpoints, ca, ca_pem):
    port = endpoints.tls(server_context(ca.issue_cert("localhost", key_type=trustme.KeyType.RSA)))
    result = check(port, ca_pem)
    assert result.status == CertificateStatus.VALID
    assert result.trusted is True
    assert result.hostname_match is True
    assert result.certificate.sans == ["localhost"]
    assert result.certificate.key_type == "RSA-2048"
    assert "trustme" in result.certificate.issuer
    assert result.certificate.not_after > NOW
    assert result.days_left > 14


def test_a_certificate_expiring_within_the_window_is_expiring_with_days_left(endpoints, ca, ca_pem):
    # A 90-day certificate (Let's Encrypt's) with 5 days left: inside the 14-day window.
    leaf = ca.issue_cert(
        "localhost", not_before=NOW - dt.timedelta(days=85), not_after=NOW + dt.timedelta(days=5, hours=1)
    )
    result = check(endpoints.tls(server_context(leaf)), ca_pem)
    assert result.status == CertificateStatus.EXPIRING
    assert result.days_left == 5
    assert "Expires in 5 days" in result.reason
    assert result.certificate.key_type == "ECDSA-secp256r1"


def test_a_short_lived_certificate_is_expiring_only_in_the_last_sixth_of_its_life(endpoints, ca, ca_pem):
    # Caddy's internal leaves live 12 hours and are renewed with 4 hours left.
    fresh = ca.issue_cert("localhost", not_before=NOW - dt.timedelta(hours=4), not_after=NOW + dt.timedelta(hours=8))
    assert check(endpoints.tls(server_context(fresh)), ca_pem).status == CertificateStatus.VALID
    late = ca.issue_cert("localhost", not_before=NOW - dt.timedelta(hours=11), not_after=NOW + dt.timedelta(hours=1))
    result = check(endpoints.tls(server_context(late)), ca_pem)
    assert result.status == CertificateStatus.EXPIRING
    # NOW is taken at import; a long suite run may be a few minutes past it.
    assert re.search(r"Expires in 0 h [45]\d min", result.reason), result.reason


def test_an_expired_certificate_is_expired_and_untrusted(endpoints, ca, ca_pem):
    leaf = ca.issue_cert("localhost", not_before=NOW - dt.timedelta(days=30), not_after=NOW - dt.timedelta(days=1))
    result = check(endpoints.tls(server_context(leaf)), ca_pem)
    assert result.status == CertificateStatus.EXPIRED
    assert result.trusted is False
    assert "Expired on" in result.reason


def test_a_certificate_not_yet_valid_is_reported_as_such(endpoints, ca, ca_pem):
    leaf = ca.issue_cert("localhost", not_before=NOW + dt.timedelta(days=2), not_after=NOW + dt.timedelta(days=90))
    result = check(endpoints.tls(server_context(leaf)), ca_pem)
    assert result.status == CertificateStatus.NOT_YET_VALID
    assert result.trusted is False


def test_a_self_signed_certificate_is_untrusted_with_openssls_reason(endpoints, ca_pem):
    result = check(endpoints.tls(self_signed_context("localhost")), ca_pem)
    assert result.status == CertificateStatus.UNTRUSTED
    assert result.trusted is False
    assert result.hostname_match is True
    assert "self-signed" in result.reason
    assert result.certificate.issuer == result.certificate.subject == "CN=localhost"


def test_a_certificate_from_an_unknown_ca_is_untrusted_against_the_system_store(endpoints, ca):
    result = check(endpoints.tls(server_context(ca.issue_cert("localhost"))), None)
    assert result.status == CertificateStatus.UNTRUSTED
    assert "local issuer" in result.reason


def test_a_certificate_for_another_host_is_wrong_host_though_trusted(endpoints, ca, ca_pem):
    result = check(endpoints.tls(server_context(ca.issue_cert("other.example.org"))), ca_pem)
    assert result.status == CertificateStatus.WRONG_HOST
    assert result.trusted is True
    assert result.hostname_match is False
    assert "other.example.org" in result.reason


def test_a_plain_http_server_is_no_tls(endpoints, ca_pem):
    result = check(endpoints.plain(), ca_pem)
    assert result.status == CertificateStatus.NO_TLS
    assert result.certificate is None


def test_a_server_that_stalls_mid_handshake_is_unreachable_within_the_timeout(endpoints, ca_pem):
    result = check(endpoints.stalled(), ca_pem)
    assert result.status == CertificateStatus.UNREACHABLE
    assert "stalled" in result.reason
    assert result.elapsed_ms >= TIMEOUT * 1000 - 50


def test_a_closed_port_is_unreachable_at_once(ca_pem):
    result = check(closed_port(), ca_pem)
    assert result.status == CertificateStatus.UNREACHABLE
    assert "refused" in result.reason
    assert result.elapsed_ms < 500


def test_a_tls_server_without_a_certificate_for_the_name_is_not_issued(endpoints, ca, ca_pem):
    result = check(endpoints.alerting(alerting_context(ca.issue_cert("localhost"))), ca_pem)
    assert result.status == CertificateStatus.NOT_ISSUED
    assert "alert" in result.reason


def test_sni_picks_the_name_checked_when_connecting_by_address(endpoints, ca, ca_pem):
    port = endpoints.tls(server_context(ca.issue_cert("index.example.test")))
    result = inspect_certificate("127.0.0.1", port, server_name="index.example.test", ca_pem=ca_pem, timeout=TIMEOUT)
    assert result.status == CertificateStatus.VALID


def test_hostname_matching_follows_wildcard_rules():
    assert hostname_matches("a.example.org", ["*.example.org"])
    assert not hostname_matches("a.b.example.org", ["*.example.org"])
    assert not hostname_matches("example.org", ["*.example.org"])
    assert hostname_matches("127.0.0.1", ["127.0.0.1"])
    assert not hostname_matches("127.0.0.1", ["localhost"])
    assert hostname_matches("LocalHost.", ["localhost"])


def test_a_fleet_check_returns_one_result_per_target_bounded_by_the_timeout(endpoints, ca, ca_pem):
    good = endpoints.tls(server_context(ca.issue_cert("localhost")))
    targets = [CertificateTarget(key=i, host="localhost", port=good, ca_pem=ca_pem) for i in range(20)]
    targets += [CertificateTarget(key="stalled", host="localhost", port=endpoints.stalled(), ca_pem=ca_pem)]
    targets += [CertificateTarget(key="closed", host="localhost", port=closed_port(), ca_pem=ca_pem)]
    started = time.monotonic()
    results = inspect_fleet(targets, concurrency=8, timeout=1.0)
    assert time.monotonic() - started < 5
    assert len(results) == 22
    assert {results[i].status for i in range(20)} == {CertificateStatus.VALID}
    assert results["stalled"].status == CertificateStatus.UNREACHABLE
    assert results["closed"].status == CertificateStatus.UNREACHABLE
