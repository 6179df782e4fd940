from __future__ import annotations

import contextlib

import django_rq
import pytest
from django.urls import reverse

from portal.models import AuditEvent
from provisioning import services
from provisioning.models import IndexState, PrivateIndex

pytestmark = pytest.mark.django_db


@pytest.fixture
def approval_required(settings) -> None:
    settings.INDEX_APPROVAL_REQUIRED = True


def request_index(client, team, name: str) -> PrivateIndex:
    response = client.post(reverse("index_new"), {"name": name, "team": team.pk, "size": "small"})
    assert response.status_code == 302, response.content.decode()[:500]
    return PrivateIndex.objects.filter(name=name).latest("pk")


@pytest.mark.e2e
def test_an_approved_request_waits_then_is_provisioned_and_checked(
    approval_required, team, lead, lead_client, portal_admin_client, run_jobs, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        index = request_index(lead_client, team, "needs-approval")
    assert index.state == IndexState.AWAITING_APPROVAL
    assert django_rq.get_queue("provisioning").count == 0  # nothing is built before the decision
    assert "An admin must approve" in lead_client.get(index.get_absolute_url()).content.decode()

    dashboard = portal_admin_client.get(reverse("dashboard")).content.decode()
    assert 'id="approvals"' in dashboard and f'id="approval-{index.pk}"' in dashboard

    with django_capture_on_commit_callbacks(execute=True):
        response = portal_admin_client.post(reverse("dashboard_approve", args=[index.pk]))
    assert response.status_code == 302
    index.refresh_from_db()
    assert index.state == IndexState.REQUESTED
    assert index.decided_by.get_username() == "admin"
    assert 'id="approvals"' not in portal_admin_client.get(reverse("dashboard")).content.decode()

    try:
        assert run_jobs("provisioning") == 1
        index.refresh_from_db()
        assert index.state == IndexState.READY, index.error
        # The admin checks the new index's certificate from the dashboard.
        with django_capture_on_commit_callbacks(execute=True):
            portal_admin_client.post(reverse("dashboard_check", args=[index.pk]))
        assert run_jobs("default") == 1
        assert index.health.latest.status == "valid", index.health.latest.reason
    finally:
        index.refresh_from_db()
        if index.state in {IndexState.READY, IndexState.FAILED}:
            with contextlib.suppress(Exception):
                services.index_delete(index=index, actor=lead)
                services.index_teardown_perform(index.pk)
    assert AuditEvent.objects.filter(action="index.approved", object_id=str(index.pk)).exists()


def test_a_denied_request_keeps_its_reason_and_the_requester_sees_it(
    approval_required, team, lead_client, portal_admin_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        index = request_index(lead_client, team, "too-expensive")

    # A denial needs a reason.
    response = portal_admin_client.post(reverse("dashboard_deny", args=[index.pk]), {"reason": "  "}, follow=True)
    assert "Say why the request is denied." in response.content.decode()
    index.refresh_from_db()
    assert index.state == IndexState.AWAITING_APPROVAL

    portal_admin_client.post(reverse("dashboard_deny", args=[index.pk]), {"reason": "Use the shared index instead."})
    index.refresh_from_db()
    assert index.state == IndexState.DENIED
    assert index.decision_reason == "Use the shared index instead."
    assert django_rq.get_queue("provisioning").count == 0

    page = lead_client.get(index.get_absolute_url()).content.decode()
    assert "Denied by admin: Use the shared index instead." in page
    event = AuditEvent.objects.get(action="index.denied", object_id=str(index.pk))
    assert event.details["reason"] == "Use the shared index instead."
    # Denied requests leave the default table and the approval list; a filter finds them.
    assert f'id="index-{index.pk}"' not in portal_admin_client.get(reverse("dashboard")).content.decode()
    denied = portal_admin_client.get(reverse("dashboard") + "?state=denied").content.decode()
    assert f'id="index-{index.pk}"' in denied
    # The name is free again.
    with django_capture_on_commit_callbacks(execute=True):
        assert request_index(lead_client, team, "too-expensive").state == IndexState.AWAITING_APPROVAL


def test_without_the_setting_a_request_is_built_at_once(
    settings, team, lead_client, django_capture_on_commit_callbacks
):
    settings.INDEX_APPROVAL_REQUIRED = False
    with django_capture_on_commit_callbacks(execute=True):
        index = request_index(lead_client, team, "no-approval")
    assert index.state == IndexState.REQUESTED
    assert django_rq.get_queue("provisioning").count == 1


def test_only_an_admin_can_approve_or_deny(approval_required, team, lead_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        index = request_index(lead_client, team, "self-approved")
    assert lead_client.post(reverse("dashboard_approve", args=[index.pk])).status_code == 404
    assert lead_client.post(reverse("dashboard_deny", args=[index.pk]), {"reason": "x"}).status_code == 404
    index.refresh_from_db()
    assert index.state == IndexState.AWAITING_APPROVAL


def test_approving_twice_is_refused_with_a_message(
    approval_required, team, lead_client, portal_admin_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        index = request_index(lead_client, team, "double-click")
        portal_admin_client.post(reverse("dashboard_approve", args=[index.pk]))
        response = portal_admin_client.post(reverse("dashboard_approve", args=[index.pk]), follow=True)
    assert "cannot go from requested to requested" in response.content.decode()
    assert django_rq.get_queue("provisioning").count == 1
