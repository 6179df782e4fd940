"""One table of bad files (tests/bad_distributions.py) through every way in: the drag-and-drop
page and the upload API that twine speaks. Each refusal carries the validation's message, and
nothing is left on the share, in the records or in the audit log. (The real twine and uv CLIs
against the upload API are in test_packages_upload_api.py.)"""

from __future__ import annotations

import base64
import html
from urllib.parse import quote

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from packages_ui.models import PackageFile
from portal.models import AuditEvent
from provisioning.drivers.backend import get_store
from provisioning.models import PrivateIndex
from provisioning.services import credential_create, index_spec
from provisioning.spec import SHARE_PACKAGES, Placement
from tests.bad_distributions import BAD_DISTRIBUTIONS, BadDistribution


@pytest.fixture
def shelf_index(team, lead) -> PrivateIndex:
    """A ready index whose shares are folders (local driver); no process runs: storing only writes."""
    placement = Placement(hostname="localhost", https_port=1, http_port=2, server_port=3, tls="internal")
    return PrivateIndex.objects.create(
        name="shelf", team=team, requested_by=lead, state="ready", deployment=placement.as_dict()
    )


def through_the_page(client, index: PrivateIndex, bad: BadDistribution, data: bytes) -> tuple[int, str]:
    response = client.generic(
        "POST", f"/indexes/{index.pk}/packages/upload/?filename={quote(bad.filename)}", data=data,
        content_type="application/octet-stream", HTTP_HX_REQUEST="true",
    )  # fmt: skip
    return response.status_code, html.unescape(response.content.decode())


def through_the_upload_api(client, index: PrivateIndex, bad: BadDistribution, data: bytes) -> tuple[int, str]:
    """The multipart request twine sends, with a publish token (the reason phrase is twine's output)."""
    credential, password = credential_create(index=index, kind="publish", label="ci", actor=None)
    auth = base64.b64encode(f"{credential.username}:{password}".encode()).decode()
    response = client.post(
        f"/indexes/{index.pk}/packages/legacy/",
        {":action": "file_upload", "protocol_version": "1", "content": SimpleUploadedFile(bad.filename, data)},
        HTTP_AUTHORIZATION=f"Basic {auth}",
    )
    return response.status_code, response.reason_phrase + "\n" + response.content.decode()


PATHS = {"page": through_the_page, "upload API": through_the_upload_api}


@pytest.mark.parametrize("way_in", list(PATHS))
@pytest.mark.parametrize("bad", BAD_DISTRIBUTIONS, ids=[b.id for b in BAD_DISTRIBUTIONS])
def test_a_bad_file_is_refused_with_its_reason_and_leaves_nothing_behind(
    way_in, bad, shelf_index, publisher_client, client
) -> None:
    events_before = AuditEvent.objects.exclude(action="credential.created").count()

    status, text = PATHS[way_in](publisher_client if way_in == "page" else client, shelf_index, bad, bad.build())

    assert status == 400
    assert bad.message in text
    share = get_store().share_dir(index_spec(shelf_index), SHARE_PACKAGES)
    assert not share.exists() or list(share.rglob("*")) == []
    assert not PackageFile.objects.exists()
    assert AuditEvent.objects.exclude(action="credential.created").count() == events_before
