"""Requesting an index in the browser: the form, its checks and what it enqueues."""

from __future__ import annotations

import django_rq
import pytest
from django.urls import reverse

from provisioning.models import PrivateIndex


def _post(client, **data):
    return client.post(reverse("index_new"), {"size": "small", **data})


def test_request_form_creates_the_index_and_queues_its_provisioning_job(
    lead_client, team, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = _post(lead_client, name="ml-models", team=team.pk)
    index = PrivateIndex.objects.get(name="ml-models")
    assert response.status_code == 302
    assert response["Location"] == index.get_absolute_url()
    assert index.state == "requested" and index.team == team
    queue = django_rq.get_queue("provisioning")
    assert queue.job_ids == [f"index-{index.pk}-provision"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ab", "3 to 63"),
        ("Bad_Name", "lowercase letters"),
        ("-dash", "lowercase letters"),
        ("a--b", "two hyphens"),
    ],
)
def test_request_form_shows_name_errors_and_creates_nothing(lead_client, team, name, message):
    response = _post(lead_client, name=name, team=team.pk)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not PrivateIndex.objects.exists()


def test_request_form_refuses_a_name_that_is_taken(lead_client, team, requested_index):
    response = _post(lead_client, name=requested_index.name, team=team.pk)
    assert "already exists" in response.content.decode()
    assert PrivateIndex.objects.count() == 1


def test_a_deleted_index_frees_its_name(lead_client, team, requested_index):
    PrivateIndex.objects.filter(pk=requested_index.pk).update(state="deleted")
    _post(lead_client, name=requested_index.name, team=team.pk)
    assert PrivateIndex.objects.filter(name=requested_index.name).count() == 2


def test_submitting_the_same_form_twice_creates_one_index(lead_client, team, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = _post(lead_client, name="twice", team=team.pk)
        second = _post(lead_client, name="twice", team=team.pk)
    assert first.status_code == 302 and second.status_code == 200
    assert PrivateIndex.objects.filter(name="twice").count() == 1
    assert django_rq.get_queue("provisioning").count == 1


def test_request_form_only_offers_and_accepts_teams_the_user_leads(lead_client, team, other_team):
    page = lead_client.get(reverse("index_new")).content.decode()
    assert team.name in page and other_team.name not in page
    response = _post(lead_client, name="sneaky", team=other_team.pk)
    assert response.status_code == 200
    assert not PrivateIndex.objects.exists()


def test_members_who_lead_no_team_cannot_open_the_request_form(member_client):
    assert member_client.get(reverse("index_new")).status_code == 404


def test_name_check_says_as_you_type_whether_a_name_is_usable(lead_client, requested_index):
    url = reverse("index_name_check")
    ok = lead_client.get(url, {"name": "fresh-name"}, headers={"HX-Request": "true"}).content.decode()
    taken = lead_client.get(url, {"name": requested_index.name}, headers={"HX-Request": "true"}).content.decode()
    bad = lead_client.get(url, {"name": "UP"}, headers={"HX-Request": "true"}).content.decode()
    assert "is available" in ok
    assert "already exists" in taken
    assert "3 to 63" in bad
    assert "<html" not in ok  # only the partial


def test_pages_require_a_signed_in_user(client, requested_index):
    for url in (reverse("home"), reverse("index_new"), requested_index.get_absolute_url()):
        response = client.get(url)
        assert response.status_code == 302 and "login" in response["Location"]


def test_health_endpoint_reports_database_and_redis(client, db):
    response = client.get(reverse("health"))
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok"}


def test_health_endpoint_answers_503_when_redis_is_unreachable(client, db, settings):
    settings.RQ_QUEUES = {**settings.RQ_QUEUES, "default": {"URL": "redis://127.0.0.1:1/0"}}
    response = client.get(reverse("health"))
    assert response.status_code == 503
    assert response.json()["redis"].startswith("error")
