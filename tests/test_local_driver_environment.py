"""Index processes started by the local driver inherit an allow-listed environment: no portal
secret (sign-in, Azure, database, Django) reaches Caddy or pypiserver."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from provisioning import services
from provisioning.drivers.local import LocalDriver
from provisioning.models import PrivateIndex

pytestmark = [pytest.mark.django_db, pytest.mark.e2e]

PORTAL_SECRETS = {
    "ENTRA_CLIENT_SECRET": "entra-secret-value",
    "AZURE_CLIENT_SECRET": "azure-secret-value",
    "AZURE_STORAGE_KEY": "azure-key-value",
    "SECRET_KEY": "django-secret-value",
    "DATABASE_URL_EXTRA": "postgres://portal:pw@db/portal",
    "SOME_FUTURE_TOKEN": "not-on-any-list",
}


def process_environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def test_index_processes_get_only_allow_listed_variables_and_their_container_environment(team, lead, monkeypatch):
    for name, value in PORTAL_SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    index = PrivateIndex.objects.create(name="env-index", team=team, requested_by=lead)
    services.index_provision_perform(index.pk)
    index.refresh_from_db()
    assert index.state == "ready", index.error
    driver = LocalDriver().runtime
    try:
        spec = services.index_spec(index)
        seen = {}
        for container in spec.containers:
            pid = next(iter(driver._container_pids(spec, container)), None)
            assert pid, container.name
            seen[container.name] = process_environment(pid)

        assert len(seen) == len(spec.containers) >= 2
        for name, environment in seen.items():
            leaked = {key for key, value in environment.items() if value in PORTAL_SECRETS.values()}
            assert leaked == set(), name
            assert not [key for key in environment if key.startswith(("ENTRA_", "AZURE_", "DJANGO", "DATABASE"))]
            assert set(environment) <= {"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "LC_ALL",
                                        "XDG_DATA_HOME", "XDG_CONFIG_HOME"}, name  # fmt: skip
            assert environment["LC_ALL"] == "C.UTF-8"
        caddy = next(env for name, env in seen.items() if "caddy" in name)
        assert caddy["XDG_DATA_HOME"].startswith(str(driver.index_dir(index.pk, index.name)))
    finally:
        with contextlib.suppress(Exception):
            services.index_delete(index=index, actor=lead)
            services.index_teardown_perform(index.pk)
