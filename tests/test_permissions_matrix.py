"""Authorization matrix: every URL of the portal × (other team's lead, other team's member,
anonymous), plus admin-only pages × the owning team's own lead and member. Nothing leaks.

The URLs are found by walking portal.urls, so pages added later are covered without editing
this file: every pattern taking an index id (or any object id) is requested with the id of an
index that belongs to a team the visitor is not in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import django_rq
import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from portal.models import AuditEvent
from provisioning.models import IndexCredential, Membership, PrivateIndex, Team

# Never served to people: the Django admin has its own staff login, RQ's pages are staff-only.
SKIPPED_PREFIXES = ("django-admin/", "rq/")
# Pages anyone may open (the sign-in pages, the load balancer's health check).
PUBLIC_NAMES = {"login", "sign_in", "auth_callback", "signed_out", "logout", "health"}
# Everything under these prefixes is for portal admins only.
ADMIN_PREFIXES = ("admin/", "audit/")
LEAK_MARKER = "zq7"
DENIED = {403, 404, 405}
# Authenticated by an index token on every request (HTTP Basic), never by the session: a visitor
# without a token gets 401 and its challenge, which must leak nothing and change nothing either.
TOKEN_API_NAMES = {"packages_legacy_upload"}
POST_DATA = {
    "name": "stolen-zz",
    "team": "1",
    "size": "small",
    "label": "stolen",
    "kind": "publish",
    "requirements": "requests",
    "python_version": "3.11",
    "platform": "manylinux2014_x86_64",
    "reason": "because",
    "next": "/",
    "confirm": "yes",
}


@dataclass(frozen=True)
class Route:
    route: str  # e.g. "indexes/<int:index_id>/restart/"
    name: str
    converters: tuple[tuple[str, str], ...]  # (kwarg, converter class name)

    @property
    def takes_object_id(self) -> bool:
        return any(kind == "IntConverter" for _, kind in self.converters)

    @property
    def admin_only(self) -> bool:
        return self.route.startswith(ADMIN_PREFIXES)


def walk(patterns=None, prefix: str = "", converters: tuple = ()) -> list[Route]:
    routes: list[Route] = []
    for entry in patterns if patterns is not None else get_resolver("portal.urls").url_patterns:
        pattern = entry.pattern
        route = prefix + str(pattern)
        found = converters + tuple(
            (name, type(conv).__name__) for name, conv in getattr(pattern, "converters", {}).items()
        )
        if route.startswith(SKIPPED_PREFIXES):
            continue
        if isinstance(entry, URLResolver):
            routes.extend(walk(entry.url_patterns, route, found))
        elif isinstance(entry, URLPattern):
            routes.append(Route(route, entry.name or "", found))
    return routes


ROUTES = walk()


@dataclass
class World:
    index: PrivateIndex
    objects: dict[str, int]  # kwarg name → id of an object of the index


@pytest.fixture
def world(db) -> World:
    owner = Team.objects.create(name="Owners", slug="owners", entra_group_id="g-owners")
    lead = User.objects.create_user("owner-lead")
    Membership.objects.create(user=lead, team=owner, role="lead")
    index = PrivateIndex.objects.create(
        name=f"secret-{LEAK_MARKER}-index",
        team=owner,
        requested_by=lead,
        state="ready",
        url=f"https://secret-{LEAK_MARKER}-index.example",
        deployment={"host": f"secret-{LEAK_MARKER}-index.example"},
    )
    credential = IndexCredential.objects.create(
        index=index, label=f"ci-{LEAK_MARKER}", username=f"reader-{LEAK_MARKER}", kind="read", password_hash="x"
    )
    objects = {"index_id": index.pk, "credential_id": credential.pk}
    try:
        from packages_ui.models import MirrorRun, PackageFile
    except ImportError:  # the package pages are another issue's; the matrix works without them
        pass
    else:
        objects["file_id"] = PackageFile.objects.create(
            index=index,
            project=f"pkg-{LEAK_MARKER}",
            version="1.0",
            filename=f"pkg_{LEAK_MARKER}-1.0-py3-none-any.whl",
            kind="wheel",
            size=10,
            sha256="0" * 64,
        ).pk
        objects["run_id"] = MirrorRun.objects.create(
            index=index, requirements=f"pkg-{LEAK_MARKER}", python_version="3.11", platform="any"
        ).pk
    return World(index=index, objects=objects)


def url_for(route: Route, world: World) -> str:
    def fill(match: re.Match) -> str:
        kind, name = match.group(1), match.group(2)
        if kind == "int":
            return str(world.objects.get(name, world.index.pk))
        return {"queue_name": "provisioning"}.get(name, "x")

    return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", fill, route.route)


def visitor(kind: str) -> Client:
    client = Client()
    if kind == "anonymous":
        return client
    team, _ = Team.objects.get_or_create(name="Others", slug="others", entra_group_id="g-others")
    owners = Team.objects.get(slug="owners")
    role = {"other team's lead": "lead", "other team's member": "member"}.get(kind)
    if role:
        user = User.objects.create_user(kind.replace(" ", "-").replace("'", ""))
        Membership.objects.create(user=user, team=team, role=role)
    else:  # the owning team's own people, for admin-only pages
        user = User.objects.create_user(kind.replace(" ", "-"))
        Membership.objects.create(user=user, team=owners, role={"own lead": "lead", "own member": "member"}[kind])
    client.force_login(user)
    return client


def snapshot(world: World) -> tuple:
    index = PrivateIndex.objects.get(pk=world.index.pk)
    queued = sum(django_rq.get_queue(q).count for q in ("provisioning", "packages", "default"))
    return (
        index.state,
        index.updated_at,
        PrivateIndex.objects.count(),
        IndexCredential.objects.filter(revoked_at=None).count(),
        IndexCredential.objects.count(),
        AuditEvent.objects.exclude(action__startswith="auth.").count(),
        queued,
    )


def requests_for(client: Client, url: str):
    yield "GET", client.get(url)
    yield "GET htmx", client.get(url, headers={"HX-Request": "true"})
    yield "POST", client.post(url, POST_DATA)
    yield "POST htmx", client.post(url, POST_DATA, headers={"HX-Request": "true"})


def assert_no_leak(response, where: str) -> None:
    body = b"".join(response) if response.streaming else response.content
    assert LEAK_MARKER.encode() not in body, f"{where} shows another team's data"
    assert LEAK_MARKER not in response.get("Location", ""), f"{where} redirects with another team's data"


def assert_denied_without_effect(world, route, who: str) -> None:
    """Every method on the route is refused for `who`, shows nothing of the other team and
    changes nothing in the database."""
    client = visitor(who)
    url = url_for(route, world)
    before = snapshot(world)
    denied = DENIED | {401} if route.name in TOKEN_API_NAMES else DENIED
    for method, response in requests_for(client, url):
        assert response.status_code in denied, f"{who} {method} {url} → {response.status_code}"
        assert_no_leak(response, f"{who} {method} {url}")
    assert snapshot(world) == before, f"{who} changed something through {url}"


def test_the_walk_finds_the_index_pages_and_admin_pages():
    names = {route.name for route in ROUTES}
    assert {"index_detail", "index_restart", "index_delete", "packages_tokens", "packages_token_revoke"} <= names
    assert "audit_log" in names
    assert sum(route.takes_object_id for route in ROUTES) >= 6


OBJECT_ROUTES = [r for r in ROUTES if r.takes_object_id and not r.admin_only]
ADMIN_ROUTES = [r for r in ROUTES if r.admin_only]
PRIVATE_ROUTES = [r for r in ROUTES if r.name not in PUBLIC_NAMES]
OTHER_PAGES = [r for r in ROUTES if not r.takes_object_id and not r.admin_only and r.name not in PUBLIC_NAMES]


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["other team's lead", "other team's member"])
@pytest.mark.parametrize("route", OBJECT_ROUTES, ids=[r.route for r in OBJECT_ROUTES])
def test_other_teams_object_pages_answer_404(world, route, who):
    assert_denied_without_effect(world, route, who)


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["other team's lead", "other team's member", "own lead", "own member"])
@pytest.mark.parametrize("route", ADMIN_ROUTES, ids=[r.route for r in ADMIN_ROUTES])
def test_admin_pages_answer_404_to_everyone_but_admins(world, route, who):
    assert_denied_without_effect(world, route, who)


@pytest.mark.django_db
@pytest.mark.parametrize("route", PRIVATE_ROUTES, ids=[r.route for r in PRIVATE_ROUTES])
def test_anonymous_visitors_are_sent_to_sign_in(world, route):
    client = visitor("anonymous")
    url = url_for(route, world)
    before = snapshot(world)

    denied = DENIED | {401} if route.name in TOKEN_API_NAMES else DENIED
    for method, response in requests_for(client, url):
        if response.status_code == 302:
            assert response["Location"].startswith("/auth/login/"), f"anonymous {method} {url}"
        else:
            assert response.status_code in denied, f"anonymous {method} {url} → {response.status_code}"
        assert_no_leak(response, f"anonymous {method} {url}")
    assert snapshot(world) == before, f"anonymous changed something through {url}"


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["other team's lead", "other team's member"])
@pytest.mark.parametrize("route", OTHER_PAGES, ids=[r.route for r in OTHER_PAGES])
def test_pages_without_an_id_show_nothing_of_other_teams(world, route, who):
    client = visitor(who)
    url = url_for(route, world)
    before = snapshot(world)

    for method, response in requests_for(client, url):
        assert response.status_code < 500, f"{who} {method} {url} → {response.status_code}"
        assert_no_leak(response, f"{who} {method} {url}")
    after = snapshot(world)
    # Requesting an index for one's own team is allowed; nothing of the other team may change.
    assert after[:2] == before[:2] and after[3:5] == before[3:5], f"{who} changed something through {url}"


# What a plain member of the owning team may not do (viewing and read credentials are allowed).
LEAD_OR_PUBLISHER_ONLY = {
    "index_retry",
    "index_restart",
    "index_delete",
    "packages_upload",
    "packages_file_delete",
    "packages_restart",
    "packages_resync",
    "packages_mirror",
}
MEMBER_REFUSED = [r for r in ROUTES if r.name in LEAD_OR_PUBLISHER_ONLY]


@pytest.mark.django_db
@pytest.mark.parametrize("route", MEMBER_REFUSED, ids=[r.route for r in MEMBER_REFUSED])
def test_own_team_member_cannot_change_the_index_or_its_packages(world, route):
    client = visitor("own member")
    url = url_for(route, world)
    before = snapshot(world)

    response = client.post(url, POST_DATA)

    assert response.status_code in DENIED, f"member POST {url} → {response.status_code}"
    assert snapshot(world)[:5] == before[:5], f"a member changed something through {url}"


@pytest.mark.django_db
def test_own_team_member_cannot_make_a_publish_credential(world):
    client = visitor("own member")

    client.post(f"/indexes/{world.index.pk}/credentials/", {"label": "mine", "kind": "publish"})

    assert not IndexCredential.objects.filter(kind="publish").exists()
