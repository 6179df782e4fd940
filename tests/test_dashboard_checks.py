from __future__ import annotations

import io

import django_rq
import pytest
from django.urls import reverse
from rq.cron import CronScheduler

from provisioning import checks
from provisioning.drivers.backend import get_runtime, get_store
from provisioning.models import CertificateCheck, CertificateStatus, IndexHealth, PrivateIndex
from provisioning.services import index_spec
from provisioning.spec import SHARE_PACKAGES

pytestmark = pytest.mark.django_db


@pytest.mark.e2e
def test_a_local_index_presents_a_valid_certificate_from_caddys_internal_ca(ready_index, portal_admin_client):
    spec = index_spec(ready_index)
    data = b"x" * 1234
    get_store().write_file(spec, SHARE_PACKAGES, "demo-1.0-py3-none-any.whl", io.BytesIO(data), size=len(data))

    check = checks.index_check(index=ready_index)

    assert check.status == "valid", check.reason
    assert check.trusted is True and check.hostname_match is True
    assert "Caddy Local Authority" in check.issuer
    assert check.subject == ""  # Caddy's internal leaves carry their names in the SANs only
    assert check.sans == ["localhost"]
    assert check.key_type.startswith("ECDSA")
    assert (check.not_after - check.not_before).total_seconds() <= 13 * 3600  # 12-hour leaves
    assert check.certificates_persisted is True
    assert any(path.endswith("localhost.crt") for path in check.certificate_files)
    assert check.container_state == "running"
    assert {c["name"] for c in check.containers} == {"caddy", "pypiserver"}
    assert (check.package_count, check.storage_bytes) == (1, 1234)
    assert check.last_upload_at is not None
    assert IndexHealth.objects.get(index=ready_index).latest == check

    page = portal_admin_client.get(reverse("dashboard")).content.decode()
    assert "Caddy Local Authority" in page and "cert-valid" in page
    detail = portal_admin_client.get(reverse("dashboard_index", args=[ready_index.pk])).content.decode()
    assert "Certificate files on caddy-certs</dt><dd>present" in detail


@pytest.mark.e2e
def test_a_stopped_local_index_is_unreachable_with_its_containers_reported(ready_index):
    get_runtime().halt(index_spec(ready_index))
    check = checks.index_check(index=ready_index)
    assert check.status == "unreachable"
    assert "refused" in check.reason
    assert check.container_state == "stopped"
    assert "Not running" in check.last_event


def test_an_index_without_a_host_is_recorded_as_not_issued(requested_index):
    check = checks.index_check(index=requested_index)
    assert check.status == "not_issued"
    assert check.container_state == ""


def test_only_the_last_n_checks_are_kept(settings, requested_index):
    settings.CERT_CHECK_HISTORY = 3
    made = [checks.index_check(index=requested_index) for _ in range(5)]
    kept = list(CertificateCheck.objects.filter(index=requested_index).order_by("checked_at", "id"))
    assert kept == made[-3:]
    assert IndexHealth.objects.get(index=requested_index).latest == made[-1]


def test_a_fleet_check_covers_indexes_with_resources_and_survives_unreachable_hosts(settings, team, lead):
    settings.CERT_CHECK_TIMEOUT_SECONDS = 1.0
    placement = {"hostname": "localhost", "https_port": 1, "http_port": 2, "server_port": 3,
                 "tls": "internal", "resources": {}}  # fmt: skip
    for i in range(3):
        PrivateIndex.objects.create(name=f"gone-{i}", team=team, requested_by=lead, state="ready",
                                    deployment=placement)  # fmt: skip
    PrivateIndex.objects.create(name="waiting", team=team, requested_by=lead, state="awaiting_approval")
    counts = checks.fleet_check()
    assert counts == {"unreachable": 3}
    assert IndexHealth.objects.count() == 3
    assert {h.latest.container_state for h in IndexHealth.objects.select_related("latest")} == {"missing"}


def test_check_now_queues_one_check_job_per_index(
    portal_admin_client, requested_index, run_jobs, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(2):
            response = portal_admin_client.post(reverse("dashboard_check", args=[requested_index.pk]))
            assert response.status_code == 302
    assert run_jobs("default") == 1
    assert requested_index.certificate_checks.count() == 1


def test_the_cron_config_schedules_the_fleet_check_the_reconcile_and_the_integrity_check_once_each(settings):
    settings.CERT_CHECK_CRON = "*/30 * * * *"
    settings.RECONCILE_INTERVAL_SECONDS = 15
    settings.PACKAGES_INTEGRITY_CRON = "17 * * * *"
    scheduler = CronScheduler(connection=django_rq.get_connection("default"))
    scheduler.load_config_from_file("provisioning.cron")
    jobs = scheduler.get_jobs()
    assert [(j.func_name, j.queue_name, j.cron, j.interval) for j in jobs] == [
        ("provisioning.check_jobs.check_fleet", "default", "*/30 * * * *", None),
        ("provisioning.jobs.reconcile_indexes", "provisioning", None, 15),
        ("packages_ui.jobs.check_fleet_integrity", "packages", "17 * * * *", None),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "persisted"),
    [
        ("caddy/certificates/local/localhost/localhost.crt", True),
        ("caddy/certificates/local/notlocalhost/notlocalhost.crt", False),  # another host's folder
        ("caddy/certificates/local/localhost/localhost.key", False),
    ],
)
def test_certificates_count_as_persisted_only_in_the_index_hosts_own_folder(team, lead, path, persisted):
    from django.utils import timezone

    from provisioning.certs import CertificateResult
    from provisioning.drivers.runtime import IndexStatus
    from provisioning.spec import Placement

    placement = Placement(hostname="localhost", https_port=1, http_port=2, server_port=3, tls="internal")
    index = PrivateIndex.objects.create(name="persist", team=team, requested_by=lead, deployment=placement.as_dict())
    result = CertificateResult(
        host="localhost", port=1, server_name="localhost", status=CertificateStatus.VALID, reason="",
        checked_at=timezone.now(), elapsed_ms=1,
    )  # fmt: skip
    facts = checks.DriverFacts(status=IndexStatus(state="running"), certificate_files=[path], packages=None)
    assert checks._record(index, index_spec(index), result, facts).certificates_persisted is persisted
