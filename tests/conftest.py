"""Shared fixtures: real PostgreSQL (pytest-django), real Redis (a test db), the local driver in
a temporary folder, users in teams with each role, and an in-process RQ worker."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import django_rq
import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from rq import SimpleWorker

from portal.permissions import ADMIN_GROUP
from provisioning.drivers import backend as driver_backend
from provisioning.drivers import local_processes
from provisioning.models import Membership, PrivateIndex, Team

# Modules of fixtures contributed per feature (registered here so every test can use them).
pytest_plugins: list[str] = [
    "tests.entra_support",  # issue 4: the local Entra provider and sign-in helpers
    "tests.azure_fixtures",  # issue 3: the Azure emulator and Azure driver settings
]


def pytest_configure(config: pytest.Config) -> None:
    # These machines export CA bundles that silently override pip's --cert and requests'
    # verify=; no test may depend on them, and child processes inherit os.environ.
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT", "SSL_CERT_FILE"):
        os.environ.pop(name, None)
    # A developer's `make run` writes .env in the checkout; manage.py children of tests must not read it.
    os.environ["PORTAL_ENV_FILE"] = os.devnull


@pytest.fixture(scope="session")
def live_server(django_db_setup, django_db_blocker, live_server):
    """pytest-django's live server, stopped before the test database is dropped. A browser's
    keep-alive connection can leave a request thread (and its database session) behind, which
    would stop the test database from being dropped: those sessions are ended here."""
    yield live_server
    live_server.stop()
    with django_db_blocker.unblock():
        from django.db import connection

        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
        connection.close()


@pytest.fixture(autouse=True)
def _local_driver_in_tmp(settings, tmp_path: Path) -> Iterator[Path]:
    """Each test gets its own index folder; any process a test left running is stopped by PID."""
    data_dir = tmp_path / "indexes"
    settings.LOCAL_DRIVER_DATA_DIR = data_dir
    driver_backend._backend_for.cache_clear()
    yield data_dir
    for pidfile in data_dir.glob("*/run/*.pid"):
        with contextlib.suppress(ValueError, OSError, ProcessLookupError):
            os.killpg(int(pidfile.read_text()), signal.SIGKILL)
    # Also those no pid file records (started by a worker a test killed): found by command line.
    local_processes.stop([p.pid for p in local_processes.processes_under(data_dir)], grace=0)
    driver_backend._backend_for.cache_clear()


CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps trying to reach the closed network.
CHROMIUM_ARGS = (
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip


@pytest.fixture
def chromium(monkeypatch) -> Iterator[Callable[..., object]]:
    """Launches Debian's Chromium through Playwright: `browser = chromium(*extra_args)`.
    Browsers are closed after the test. (`playwright install` cannot download a browser here.)"""
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (make test installs it: apt-get install chromium)")
    # Playwright's sync API keeps an asyncio loop in this thread; the tests' ORM calls are plain
    # synchronous ones, which Django would otherwise refuse next to a running loop.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browsers = []

        def launch(*extra_args: str):
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args])
            browsers.append(browser)
            return browser

        yield launch
        for browser in browsers:
            browser.close()


@pytest.fixture(autouse=True)
def _empty_redis() -> None:
    django_rq.get_connection("default").flushdb()


@pytest.fixture
def run_jobs() -> Callable[[], int]:
    """Run every queued job in this process (it sees the test's database); returns how many."""

    def run(queue: str = "provisioning") -> int:
        q = django_rq.get_queue(queue)
        count = q.count
        SimpleWorker([q], connection=q.connection).work(burst=True)
        return count

    return run


@pytest.fixture
def team(db) -> Team:
    return Team.objects.create(name="Data Platform", slug="data-platform", entra_group_id="group-data")


@pytest.fixture
def other_team(db) -> Team:
    return Team.objects.create(name="Payments", slug="payments", entra_group_id="group-payments")


def _user(username: str, team: Team | None = None, role: str | None = None) -> User:
    user = User.objects.create_user(username=username, email=f"{username}@example.com")
    if team is not None and role is not None:
        Membership.objects.create(user=user, team=team, role=role)
    return user


@pytest.fixture
def lead(team) -> User:
    return _user("lead", team, Membership.Role.LEAD)


@pytest.fixture
def member(team) -> User:
    return _user("member", team, Membership.Role.MEMBER)


@pytest.fixture
def publisher(team) -> User:
    return _user("publisher", team, Membership.Role.PUBLISHER)


@pytest.fixture
def other_lead(other_team) -> User:
    return _user("other-lead", other_team, Membership.Role.LEAD)


@pytest.fixture
def portal_admin(db) -> User:
    user = _user("admin")
    user.groups.add(Group.objects.get_or_create(name=ADMIN_GROUP)[0])
    # As the Portal.Admin app role makes them at sign-in: staff, to maintain teams in the Django admin.
    user.is_staff = user.is_superuser = True
    user.save(update_fields=["is_staff", "is_superuser"])
    return user


def _client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def lead_client(lead) -> Client:
    return _client_for(lead)


@pytest.fixture
def member_client(member) -> Client:
    return _client_for(member)


@pytest.fixture
def publisher_client(publisher) -> Client:
    return _client_for(publisher)


@pytest.fixture
def other_lead_client(other_lead) -> Client:
    return _client_for(other_lead)


@pytest.fixture
def portal_admin_client(portal_admin) -> Client:
    return _client_for(portal_admin)


@pytest.fixture
def requested_index(team, lead) -> PrivateIndex:
    """An index row as the request form creates it, not yet built."""
    return PrivateIndex.objects.create(name="team-index", team=team, requested_by=lead)


@pytest.fixture
def ready_index(team, lead) -> Iterator[PrivateIndex]:
    """An index built through the real local driver (pypiserver + Caddy), torn down after."""
    from provisioning import services

    index = PrivateIndex.objects.create(name="ready-index", team=team, requested_by=lead)
    services.index_provision_perform(index.pk)
    index.refresh_from_db()
    assert index.state == "ready", index.error
    yield index
    index.refresh_from_db()
    if index.state in {"ready", "failed"}:
        with contextlib.suppress(Exception):
            services.index_delete(index=index, actor=lead)
            services.index_teardown_perform(index.pk)
