"""Unit tests: index name rules, state transitions, the index spec."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ValidationError

from provisioning.models import TRANSITIONS, IndexState, InvalidTransition, PrivateIndex, validate_index_name
from provisioning.spec import Placement, build_index_spec


@pytest.mark.parametrize("name", ["abc", "team-ml", "a1b2", "x" * 63, "data-platform-2"])
def test_index_name_accepts_dns_labels(name):
    validate_index_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "ab",
        "x" * 64,
        "-leading",
        "trailing-",
        "Upper",
        "under_score",
        "with space",
        "dot.name",
        "two--hyphens",
        "é-acc",
    ],
)
def test_index_name_rejects_what_cannot_be_a_host_name(name):
    with pytest.raises(ValidationError):
        validate_index_name(name)


def test_every_state_appears_in_the_transition_table():
    assert set(TRANSITIONS) == set(IndexState.values)


@pytest.mark.parametrize(
    ("start", "target", "allowed"),
    [
        ("requested", "provisioning", True),
        ("provisioning", "ready", True),
        ("ready", "restarting", True),
        ("restarting", "ready", True),
        ("ready", "deleting", True),
        ("failed", "provisioning", True),
        ("failed", "deleting", True),
        ("deleting", "deleted", True),
        ("awaiting_approval", "denied", True),
        ("deleted", "provisioning", False),
        ("provisioning", "deleting", False),
        ("requested", "ready", False),
        ("denied", "requested", False),
    ],
)
def test_state_transitions_follow_the_design(start, target, allowed):
    assert PrivateIndex(state=start).can_transition_to(target) is allowed


def test_an_invalid_transition_raises_and_changes_nothing(requested_index):
    with pytest.raises(InvalidTransition):
        requested_index.transition_to("ready")
    requested_index.refresh_from_db()
    assert requested_index.state == "requested"


def _azure_like_spec():
    placement = Placement(
        hostname="ml-ab12cd.westeurope.azurecontainer.io", https_port=443, http_port=80,
        server_port=8080, tls="acme",
    )  # fmt: skip
    return build_index_spec(index_id=7, name="ml", team="data", size="medium", placement=placement)


def test_the_acme_caddyfile_names_the_ca_the_contact_and_the_test_root_and_keeps_certificates_on_caddy_certs(
    settings,
):
    settings.ACME_DIRECTORY_URL = "https://127.0.0.1:14000/dir"
    settings.ACME_EMAIL = "platform@example.com"
    settings.ACME_CA_ROOT = "/etc/pebble/tls-ca.pem"
    spec = _azure_like_spec()
    options = spec.caddyfile.split("}\n", 1)[0]
    assert "\tacme_ca https://127.0.0.1:14000/dir\n" in options
    assert "\temail platform@example.com\n" in options
    assert "\tacme_ca_root /etc/pebble/tls-ca.pem\n" in options
    assert ("XDG_DATA_HOME", "/data") in spec.container("caddy").environment
    assert any(m.share == "caddy-certs" and m.mount_path == "/data" for m in spec.container("caddy").mounts)


def test_the_acme_ca_is_lets_encrypt_production_by_default_and_staging_one_switch_away():
    def directory(**env: str) -> str:
        code = "from django.conf import settings; print(settings.ACME_DIRECTORY_URL)"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("ACME_")}
        environment.update(DEBUG="1", DJANGO_SETTINGS_MODULE="portal.settings", **env)
        out = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True)
        return out.stdout.strip()

    assert directory() == "https://acme-v02.api.letsencrypt.org/directory"
    assert directory(ACME_STAGING="1") == "https://acme-staging-v02.api.letsencrypt.org/directory"
    assert directory(ACME_STAGING="1", ACME_DIRECTORY_URL="https://ca.example/dir") == "https://ca.example/dir"


def test_spec_exposes_only_http_and_https_never_pypiserver():
    spec = _azure_like_spec()
    assert spec.public_ports == (80, 443)
    assert 8080 not in spec.public_ports
    for container in spec.containers:
        if container.name.startswith("pypiserver"):
            assert container.ports == ()
            assert "127.0.0.1" in container.command


def test_spec_pins_every_image():
    for container in _azure_like_spec().containers:
        assert ":" in container.image.rsplit("/", 1)[-1]
        assert not container.image.endswith(":latest")


def test_spec_runs_one_index_server_reading_the_portals_manifest_and_tokens_with_read_only_shares():
    spec = _azure_like_spec()
    assert [c.name for c in spec.containers] == ["caddy", "pypiserver"]
    server = spec.container("pypiserver")
    args = list(server.command)
    assert args[:2] == ["python", "/config/index/server.py"]
    assert args[args.index("--manifest") + 1] == "/config/index/manifest.json"
    assert args[args.index("--tokens") + 1] == "/config/index/tokens.json"
    assert all(mount.read_only for mount in server.mounts)
    assert {f.path: f.replace for f in spec.config_files} == {
        "Caddyfile": True, "index/server.py": True, "index/manifest.json": False, "index/tokens.json": False,
    }  # fmt: skip


def test_caddyfile_proxies_to_the_index_server_holding_requests_while_it_comes_back():
    caddyfile = _azure_like_spec().caddyfile
    assert "reverse_proxy 127.0.0.1:8080 {\n\t\tlb_try_duration 15s" in caddyfile
    assert "max_size 64KB" in caddyfile  # uploads go to the portal, never to the index
    assert "\tencode zstd gzip\n" in caddyfile  # pages and metadata files compressed for pip and uv
    assert "admin off" in caddyfile
    assert "tls internal" not in caddyfile  # Let's Encrypt in Azure


def test_spec_mounts_the_three_shares_where_caddy_and_pypiserver_expect_them():
    spec = _azure_like_spec()
    assert [s.name for s in spec.shares] == ["caddy-certs", "caddy-config", "pypipackages"]
    caddy_mounts = {m.share: m.mount_path for m in spec.container("caddy").mounts}
    assert caddy_mounts == {"caddy-certs": "/data", "caddy-config": "/config"}
    server_mounts = {m.share: m.mount_path for m in spec.container("pypiserver").mounts}
    assert server_mounts == {"pypipackages": "/data/packages", "caddy-config": "/config"}
    assert spec.share("pypipackages").quota_gb == 50


def test_spec_fits_the_containers_into_the_chosen_size():
    spec = _azure_like_spec()
    assert sum(c.cpu for c in spec.containers) <= 2.0
    assert sum(c.memory_gb for c in spec.containers) <= 4.0
    assert spec.url == "https://ml-ab12cd.westeurope.azurecontainer.io/simple/"


def test_generated_passwords_are_long_and_safe_to_pass_on_any_command_line():
    from provisioning.services import new_password

    passwords = {new_password() for _ in range(2000)}
    assert len(passwords) == 2000
    assert all(len(p) == 40 and p.isalnum() and p.isascii() for p in passwords)
