"""The tokens page: named read and publish tokens, the password shown once with snippets,
revocation, permissions. The tokens working against a real index is in test_packages_e2e.py."""

from __future__ import annotations

import json
import re

import pytest

from provisioning.drivers.backend import get_store
from provisioning.index_server import verify_token
from provisioning.models import PrivateIndex
from provisioning.services import index_spec
from provisioning.spec import SHARE_CONFIG, TOKENS_PATH, Placement


@pytest.fixture
def shelf_index(team, lead) -> PrivateIndex:
    """A ready index whose shares are folders; no server runs (tokens only write the tokens file)."""
    placement = Placement(hostname="localhost", https_port=1, http_port=2, server_port=3, tls="internal")
    return PrivateIndex.objects.create(
        name="shelf", team=team, requested_by=lead, state="ready", deployment=placement.as_dict()
    )


def tokens_on_share(index: PrivateIndex) -> dict[str, str]:
    """username → hash, as the index server reads them."""
    return json.loads(b"".join(get_store().read_file(index_spec(index), SHARE_CONFIG, TOKENS_PATH)))["tokens"]


def test_member_creates_a_read_token_and_sees_the_password_once_with_snippets(shelf_index, member_client) -> None:
    response = member_client.post(f"/indexes/{shelf_index.pk}/packages/tokens/", {"label": "laptop", "kind": "read"})
    page = response.content.decode()

    credential = shelf_index.credentials.get()
    password = re.search(r'id="cred-password">([^<]+)<', page).group(1)
    assert response["Cache-Control"] == "no-store"
    assert credential.kind == "read" and credential.label == "laptop"
    assert password not in credential.password_hash
    assert "pip (Linux and macOS)" in page and "uv" in page and "Poetry" in page
    assert "[distutils]" not in page  # a read token cannot upload, so no twine snippet
    assert verify_token(tokens_on_share(shelf_index)[credential.username], password)
    listing = member_client.get(f"/indexes/{shelf_index.pk}/packages/tokens/").content.decode()
    assert credential.username in listing and password not in listing


def test_publisher_creates_a_publish_token_with_a_twine_snippet(shelf_index, publisher_client) -> None:
    page = publisher_client.post(
        f"/indexes/{shelf_index.pk}/packages/tokens/", {"label": "CI", "kind": "publish"}
    ).content.decode()

    credential = shelf_index.credentials.get()
    assert credential.kind == "publish"
    assert "twine" in page and "[distutils]" in page
    assert credential.username in tokens_on_share(shelf_index)


def test_revoking_removes_the_token_from_the_tokens_file(shelf_index, publisher_client) -> None:
    publisher_client.post(f"/indexes/{shelf_index.pk}/packages/tokens/", {"label": "CI", "kind": "publish"})
    credential = shelf_index.credentials.get()

    response = publisher_client.post(f"/indexes/{shelf_index.pk}/packages/tokens/{credential.pk}/revoke/")

    credential.refresh_from_db()
    assert response.status_code == 302
    assert credential.revoked_at is not None
    assert credential.username not in tokens_on_share(shelf_index)


def test_a_member_cannot_revoke_someone_elses_token(shelf_index, publisher_client, member_client) -> None:
    publisher_client.post(f"/indexes/{shelf_index.pk}/packages/tokens/", {"label": "CI", "kind": "read"})
    credential = shelf_index.credentials.get()

    response = member_client.post(f"/indexes/{shelf_index.pk}/packages/tokens/{credential.pk}/revoke/")

    credential.refresh_from_db()
    assert response.status_code == 403
    assert credential.revoked_at is None


def test_tokens_of_another_teams_index_are_not_found(shelf_index, publisher_client, other_lead_client) -> None:
    publisher_client.post(f"/indexes/{shelf_index.pk}/packages/tokens/", {"label": "CI", "kind": "read"})
    credential = shelf_index.credentials.get()

    assert other_lead_client.get(f"/indexes/{shelf_index.pk}/packages/tokens/").status_code == 404
    assert (
        other_lead_client.post(f"/indexes/{shelf_index.pk}/packages/tokens/{credential.pk}/revoke/").status_code == 404
    )
