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

    assert b'<option value="credential.created">Created a token for</option>' in response.content
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


def test_the_log_reads_as_sentences_with_linked_objects_and_readable_details(portal_admin_client, lead, ready_index):
    audit_record(action="package.stored", actor=lead, obj=ready_index,
                 details={"filename": "six-1.16.0-py2.py3-none-any.whl", "sha256": "ab" * 32})  # fmt: skip
    audit_record(action="packages.mirror_requested", actor=lead, obj=ready_index,
                 details={"requirements": ["six==1.16.0", "idna"], "python": "3.11"})  # fmt: skip
    audit_record(action="auth.signed_in", actor=lead, obj=lead)

    page = portal_admin_client.get("/audit/").content.decode()

    assert f'Uploaded a package to index <a href="/indexes/{ready_index.pk}/packages/">ready-index</a>' in page
    assert f'Asked to mirror from PyPI into index <a href="/indexes/{ready_index.pk}/packages/">' in page
    assert "requirements</span> <span>six==1.16.0, idna</span>" in page
    assert f'SHA-256</span> <span title="{"ab" * 32}">{"ab" * 6}…</span>' in page
    assert "Signed in</td>" in page  # not "Signed in user lead"
    for python_speak in ("provisioning.privateindex", "['six==1.16.0'", "<code>auth.signed_in</code>"):
        assert python_speak not in page


def test_unknown_actions_still_read_as_words():
    assert AuditEvent(action="index.frobnicate_failed").action_label == "Index frobnicate failed"


def test_system_actor_filter_finds_the_events_shown_as_system(portal_admin_client, events, requested_index):
    audit_record(action="index.provisioned", obj=requested_index, details={"url": "https://x/simple/"})

    response = portal_admin_client.get("/audit/", {"actor": "system"})

    assert [event.action for event in response.context["page"].object_list] == ["index.provisioned"]
    assert "<td>system</td>" in response.content.decode()


def test_object_filter_finds_objects_by_the_kind_the_table_shows(portal_admin_client, events, other_team):
    audit_record(action="team.group_changed", obj=other_team, details={"group": "g"})

    by_team = portal_admin_client.get("/audit/", {"object": "team"}).context["page"].object_list
    by_user = portal_admin_client.get("/audit/", {"object": "user"}).context["page"].object_list

    assert "team.group_changed" in [event.action for event in by_team]
    assert [event.action for event in by_user] == ["auth.signed_in"]


def test_every_action_the_portal_records_has_a_name():
    import pathlib
    import re

    from portal.audit_labels import ACTION_LABELS

    root = pathlib.Path(__file__).resolve().parent.parent
    recorded = set()
    for path in [*root.glob("portal/**/*.py"), *root.glob("provisioning/**/*.py"), *root.glob("packages_ui/**/*.py")]:
        recorded |= set(re.findall(r'action="([a-z_]+\.[a-z_]+)"', path.read_text()))
        recorded |= set(re.findall(r'"(package\.[a-z_]+)" if', path.read_text()))
    recorded |= {f"index.{op}_failed" for op in ("provision", "restart", "teardown")}
    assert recorded
    assert recorded - set(ACTION_LABELS) == set()
