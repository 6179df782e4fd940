"""The audit log page: admins only, filters by action, actor, object and date; append-only."""

from __future__ import annotations

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from portal.audit import audit_record
from portal.models import AuditEvent
from portal.views_audit import PAGE_SIZE

pytestmark = pytest.mark.django_db


@pytest.fixture
def events(lead, member, requested_index) -> list[AuditEvent]:
    old = audit_record(action="index.requested", actor=lead, obj=requested_index)
    # Back-dated with SQL: the log itself refuses updates.
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {AuditEvent._meta.db_table} SET at = %s WHERE id = %s",
            [timezone.now() - datetime.timedelta(days=10), old.pk],
        )
    return [
        old,
        audit_record(action="auth.signed_in", actor=member, obj=member),
        audit_record(action="credential.created", actor=lead, obj=requested_index, details={"label": "ci"}),
    ]


def test_admin_sees_every_event(portal_admin_client, events):
    response = portal_admin_client.get("/audit/")

    assert response.status_code == 200
    assert response.content.count(b"<tr>") == 1 + len(events)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"action": "credential.created"}, ["credential.created"]),
        ({"actor": "memb"}, ["auth.signed_in"]),
        ({"object": "team-index"}, ["credential.created", "index.requested"]),
        (
            {"since": (timezone.now() - datetime.timedelta(days=1)).date().isoformat()},
            ["credential.created", "auth.signed_in"],
        ),
        ({"until": (timezone.now() - datetime.timedelta(days=5)).date().isoformat()}, ["index.requested"]),
    ],
)
def test_filters_narrow_the_log(portal_admin_client, events, query, expected):
    response = portal_admin_client.get("/audit/", query)

    shown = [event.action for event in response.context["page"].object_list]
    assert sorted(shown) == sorted(expected)


def test_htmx_filter_returns_only_the_table(portal_admin_client, events):
    response = portal_admin_client.get("/audit/", {"action": "auth.signed_in"}, headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert b'id="audit-table"' in response.content
    assert b"<html" not in response.content


def test_htmx_table_pages_do_not_query_the_action_choices(portal_admin_client, events):
    with CaptureQueriesContext(connection) as queries:
        response = portal_admin_client.get("/audit/", {"actor": "memb"}, headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert not [q["sql"] for q in queries if "DISTINCT" in q["sql"].upper()]


def test_full_page_offers_the_recorded_actions(portal_admin_client, events):
    response = portal_admin_client.get("/audit/")

    assert b'<option value="credential.created">' in response.content
    assert b'<option value="" selected>Any action</option>' in response.content


def test_pager_links_keep_the_filters_and_push_the_url(portal_admin_client, member):
    for n in range(PAGE_SIZE + 1):
        audit_record(action="auth.signed_in", actor=member, obj=member, details={"n": n})

    first = portal_admin_client.get("/audit/", {"action": "auth.signed_in"}, headers={"HX-Request": "true"})
    older = '<a href="?action=auth.signed_in&amp;page=2" hx-get="?action=auth.signed_in&amp;page=2"'
    assert older in first.content.decode()
    assert 'hx-push-url="true">Older</a>' in first.content.decode()

    second = portal_admin_client.get("/audit/", {"page": "2"})
    assert '<a href="?page=1" hx-get="?page=1"' in second.content.decode()
    assert 'hx-push-url="true">Newer</a>' in second.content.decode()


def test_members_and_leads_get_404(lead_client, member_client, events):
    assert lead_client.get("/audit/").status_code == 404
    assert member_client.get("/audit/").status_code == 404


def test_anonymous_visitor_is_sent_to_sign_in(client):
    response = client.get("/audit/")

    assert response.status_code == 302
    assert response["Location"].startswith("/auth/login/")


def test_the_log_is_append_only(events):
    event = events[0]
    event.action = "rewritten"

    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.update(action="x")


def test_secrets_passed_in_details_are_not_recorded(lead):
    event = audit_record(action="auth.sign_in_failed", details={"reason": "x", "code": "abc", "id_token": "ey..."})

    assert event.details == {"reason": "x"}
