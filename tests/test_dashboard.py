from __future__ import annotations

from decimal import Decimal

import django_rq
import pytest
from django.db import connection
from django.db.models import Count
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rq import SimpleWorker
from rq.job import Job

from packages_ui.models import PackageFile, UnrecordedFile
from portal.models import AuditEvent
from provisioning import cost, dashboard
from provisioning.models import IndexHealth, IndexState, PrivateIndex
from tests.dashboard_support import FILE_SIZE, make_fleet

pytestmark = pytest.mark.django_db

DASHBOARD_URLS = [
    ("get", "dashboard", []),
    ("get", "dashboard_queues", []),
    ("post", "dashboard_requeue", ["default", "some-job"]),
    ("get", "dashboard_index", [1]),
    ("post", "dashboard_check", [1]),
    ("post", "dashboard_retry", [1]),
    ("post", "dashboard_restart", [1]),
    ("post", "dashboard_approve", [1]),
    ("post", "dashboard_deny", [1]),
    ("get", "dashboard_teardown", [1]),
    ("post", "dashboard_teardown", [1]),
]


def count_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


def test_the_dashboard_lives_under_admin_dashboard_not_djangos_admin():
    assert reverse("dashboard") == "/admin/dashboard/"
    assert reverse("admin:index") == "/django-admin/"


@pytest.mark.parametrize(("method", "name", "args"), DASHBOARD_URLS)
def test_every_dashboard_url_is_a_404_for_a_team_lead(lead_client, requested_index, method, name, args):
    args = [requested_index.pk if a == 1 else a for a in args]
    response = getattr(lead_client, method)(reverse(name, args=args))
    assert response.status_code == 404
    requested_index.refresh_from_db()
    assert requested_index.state == IndexState.REQUESTED


@pytest.mark.parametrize(("method", "name", "args"), DASHBOARD_URLS)
def test_every_dashboard_url_sends_an_anonymous_visitor_to_sign_in(client, requested_index, method, name, args):
    args = [requested_index.pk if a == 1 else a for a in args]
    response = getattr(client, method)(reverse(name, args=args))
    assert response.status_code == 302
    assert "/admin/dashboard/" not in response["Location"].split("?")[0]


def test_the_dashboard_makes_the_same_number_of_queries_for_10_and_500_indexes(portal_admin_client):
    make_fleet(10, prefix="small")
    small = count_queries(portal_admin_client, reverse("dashboard"))
    make_fleet(490, prefix="large")
    assert PrivateIndex.objects.count() == 500
    large = count_queries(portal_admin_client, reverse("dashboard"))
    assert small == large
    # Filtered, sorted, searched and paged views stay constant too.
    url = reverse("dashboard") + "?cert=problem&sort=-cost&q=large&page=2"
    assert count_queries(portal_admin_client, url) == large


def test_the_dashboard_shows_each_index_with_certificate_health_storage_and_cost(portal_admin_client):
    index = make_fleet(1, prefix="shown")[0]
    response = portal_admin_client.get(reverse("dashboard"))
    html = response.content.decode()
    assert index.name in html
    assert "shown team 0" in html
    assert "Let&#x27;s Encrypt" in html  # issuer on hover
    assert "cert-valid" in html
    assert "running" in html
    assert str(cost.index_monthly_cost(size=index.size, state=index.state)) in html
    assert "10.0\xa0GB" in html  # the small size's 10 GiB package quota


def test_the_banner_counts_expiring_and_failed_certificates_of_serving_indexes(portal_admin_client):
    make_fleet(100, prefix="banner")
    data = dashboard.banner()
    serving = PrivateIndex.objects.filter(state__in=dashboard.SERVING_STATES)
    assert data.expiring == serving.filter(health__cert_status="expiring").count() > 0
    assert data.failed == serving.filter(health__cert_status__in=["expired", "unreachable"]).count() > 0
    response = portal_admin_client.get(reverse("dashboard"))
    assert f"{data.certificate_problems} certificates need attention" in response.content.decode()


def test_filters_narrow_the_table_by_state_team_certificate_and_search(portal_admin_client):
    make_fleet(40, prefix="filt")
    f = dashboard.Filters.from_query
    assert {i.state for i in dashboard.filtered_indexes(f(QueryDict("state=failed")))} == {"failed"}
    assert {i.team.slug for i in dashboard.filtered_indexes(f(QueryDict("team=filt-team-2")))} == {"filt-team-2"}
    problems = list(dashboard.filtered_indexes(f(QueryDict("cert=problem"))))
    assert problems and all(i.health.cert_status in {"expiring", "expired", "unreachable"} for i in problems)
    unchecked = list(dashboard.filtered_indexes(f(QueryDict("cert=unchecked"))))
    assert unchecked and all(i.state == "awaiting_approval" for i in unchecked)
    assert [i.name for i in dashboard.filtered_indexes(f(QueryDict("q=filt-00007")))] == ["filt-00007"]
    response = portal_admin_client.get(reverse("dashboard") + "?q=filt-00007", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert 'id="dashboard-table"' in html and "<html" not in html
    assert "filt-00007" in html and "filt-00008" not in html


def test_sorting_by_cost_puts_large_indexes_first_and_unknown_values_last(portal_admin_client):
    make_fleet(20, prefix="sort")
    rows = list(dashboard.filtered_indexes(dashboard.Filters.from_query(QueryDict("sort=-cost"))))
    costs = [r.monthly_cost for r in rows]
    assert costs == sorted(costs, reverse=True)
    # By certificate expiry, soonest first; indexes never checked come last in both directions.
    for sort in ("certificate", "-certificate"):
        rows = list(dashboard.filtered_indexes(dashboard.Filters.from_query(QueryDict(f"sort={sort}"))))
        checked = [IndexHealth.objects.filter(index=r).exists() for r in rows]
        assert checked == sorted(checked, reverse=True) and not checked[-1]
    assert dashboard.Filters.from_query(QueryDict("sort=password")).sort == dashboard.DEFAULT_SORT


def test_package_count_storage_and_last_upload_come_from_the_package_files(portal_admin_client):
    make_fleet(10, prefix="pkg")
    rows = list(dashboard.filtered_indexes(dashboard.Filters.from_query(QueryDict("sort=-packages"))))
    assert rows[0].package_count == 4 and rows[0].storage_used == 4 * FILE_SIZE
    assert rows[-1].package_count == 0 and rows[-1].storage_used == 0 and rows[-1].last_upload is None
    html = portal_admin_client.get(reverse("dashboard") + "?sort=-storage").content.decode()
    assert "11.4\xa0MB / 10.0\xa0GB" in html


def test_deleted_files_do_not_count_and_integrity_problems_are_flagged_with_a_link(portal_admin_client):
    make_fleet(10, prefix="flag")
    index = PackageFile.objects.values("index").annotate(n=Count("pk")).filter(n__gte=2).order_by("index").first()
    index = PrivateIndex.objects.get(pk=index["index"])
    files = list(PackageFile.objects.filter(index=index).order_by("pk"))
    PackageFile.objects.filter(pk=files[0].pk).update(state="deleted")
    PackageFile.objects.filter(pk=files[1].pk).update(problem="changed")
    UnrecordedFile.objects.create(index=index, path="dropped-1.0-py3-none-any.whl", size=1, sha256="0" * 64)

    row = dashboard.filtered_indexes(dashboard.Filters.from_query(QueryDict(f"q={index.name}"))).get(pk=index.pk)
    html = portal_admin_client.get(reverse("dashboard") + f"?q={index.name}").content.decode()

    assert row.package_count == len(files) - 1 and row.integrity_problems == 2
    assert f'href="/indexes/{index.pk}/packages/#integrity"' in html and "2 to check" in html


def test_team_totals_add_up_the_cost_of_billed_indexes(portal_admin_client):
    indexes = make_fleet(30, prefix="tot", teams=3)
    totals = {t.slug: t for t in dashboard.team_totals()}
    for slug, total in totals.items():
        expected = sum(
            (cost.index_monthly_cost(size=i.size, state=i.state) for i in indexes if i.team.slug == slug),
            start=Decimal("0"),
        )
        assert total.monthly_cost == expected
    assert sum(t.indexes for t in totals.values()) == 30


def test_the_cost_estimate_follows_the_price_table(settings):
    settings.PRICE_TABLE = {"currency": "EUR", "aci_vcpu_second": 0.00001, "aci_gb_second": 0.000001,
                            "file_share_gib_month": 0.1}  # fmt: skip
    cpu, memory, shares = cost.size_resources("small")
    assert (cpu, memory, shares) == (1.0, 1.5, 12)
    expected = (1.0 * 0.00001 + 1.5 * 0.000001) * 730 * 3600 + 12 * 0.1
    assert cost.size_monthly_cost("small") == Decimal(str(round(expected, 2)))
    assert cost.index_monthly_cost(size="small", state="awaiting_approval") == 0
    assert cost.index_monthly_cost(size="small", state="ready") == Decimal(str(round(expected, 2)))


def test_an_admin_can_retry_restart_and_tear_down_from_the_dashboard(portal_admin_client, team, lead):
    failed = PrivateIndex.objects.create(name="failed-one", team=team, requested_by=lead, state="failed",
                                         failed_operation="provision", failed_step="deploy")  # fmt: skip
    ready = PrivateIndex.objects.create(name="ready-one", team=team, requested_by=lead, state="ready")
    doomed = PrivateIndex.objects.create(name="doomed-one", team=team, requested_by=lead, state="ready")
    next_url = reverse("dashboard") + "?state=failed"

    response = portal_admin_client.post(reverse("dashboard_retry", args=[failed.pk]), {"next": next_url})
    assert response.status_code == 302 and response["Location"] == next_url
    response = portal_admin_client.post(
        reverse("dashboard_restart", args=[ready.pk]), {"next": "https://evil.example/"}
    )
    assert response["Location"] == reverse("dashboard")

    confirm = portal_admin_client.get(reverse("dashboard_teardown", args=[doomed.pk]))
    assert b"Type <code>doomed-one</code> to confirm" in confirm.content
    portal_admin_client.post(reverse("dashboard_teardown", args=[doomed.pk]), {"confirm_name": "wrong"})
    doomed.refresh_from_db()
    assert doomed.state == "ready"
    portal_admin_client.post(reverse("dashboard_teardown", args=[doomed.pk]), {"confirm_name": "doomed-one"})

    for index, state in ((failed, "provisioning"), (ready, "restarting"), (doomed, "deleting")):
        index.refresh_from_db()
        assert index.state == state
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"index.retried", "index.restart_requested", "index.delete_requested"} <= actions


def test_an_invalid_action_shows_an_error_instead_of_failing(portal_admin_client, requested_index):
    response = portal_admin_client.post(reverse("dashboard_restart", args=[requested_index.pk]), follow=True)
    assert response.status_code == 200
    assert "cannot go from requested to restarting" in response.content.decode()


def test_the_queue_panel_lists_failed_jobs_and_requeues_one(
    portal_admin_client, portal_admin, django_capture_on_commit_callbacks
):
    queue = django_rq.get_queue("default")
    with django_capture_on_commit_callbacks(execute=True):  # django-rq enqueues on commit
        queue.enqueue("tests.test_dashboard.fail_on_purpose", job_id="doomed-job")
    job = Job.fetch("doomed-job", connection=queue.connection)
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    assert job.get_status(refresh=True) == "failed"

    panel = dashboard.queue_panel()
    default = next(q for q in panel.queues if q.name == "default")
    assert default.failed == 1
    assert default.failed_jobs[0].id == "doomed-job"
    assert "on purpose" in default.failed_jobs[0].error

    html = portal_admin_client.get(reverse("dashboard_queues")).content.decode()
    assert "doomed-job" in html and "Requeue" in html and "/rq/" in html
    response = portal_admin_client.post(reverse("dashboard_requeue", args=["default", "doomed-job"]))
    assert response.status_code == 302
    assert job.get_status(refresh=True) == "queued"
    assert AuditEvent.objects.filter(action="rq.job_requeued", actor=portal_admin).exists()
    # A second requeue finds nothing to requeue and says so.
    response = portal_admin_client.post(reverse("dashboard_requeue", args=["default", "doomed-job"]), follow=True)
    assert "no longer among the failed jobs" in response.content.decode()


def test_the_queue_panel_reports_redis_down_instead_of_failing(settings, portal_admin_client):
    # Port 1 on loopback: nothing listens, so the connection is refused at once.
    settings.RQ_QUEUES = {"default": {"URL": "redis://127.0.0.1:1/0", "DEFAULT_TIMEOUT": 60}}
    response = portal_admin_client.get(reverse("dashboard_queues"), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "Redis is not answering" in response.content.decode()


def fail_on_purpose() -> None:
    raise RuntimeError("failed on purpose")
