"""Yanking (PEP 592) and the metadata backfill (PEP 658) on the portal's side: the service, the
package page with its permissions, `manage.py yank` and `manage.py backfill_metadata`, on a
local index folder (no process started; tests/test_modern_index_e2e.py runs pip and uv)."""

from __future__ import annotations

import hashlib
import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import CommandError, call_command
from django.test import Client

from packages_ui import services
from packages_ui.manifest import index_manifest
from packages_ui.models import PackageFile
from packages_ui.receiving import ReceivedFile
from packages_ui.validation import file_sha256
from portal.models import AuditEvent
from provisioning.drivers.backend import get_store
from provisioning.models import PrivateIndex
from provisioning.services import index_spec
from provisioning.spec import SHARE_PACKAGES, Placement
from tests.builders import build_sdist, build_wheel


@pytest.fixture
def shelf(team, lead) -> PrivateIndex:
    """A ready index whose package share is a folder (local driver, no index server started)."""
    placement = Placement(hostname="localhost", https_port=1, http_port=2, server_port=3, tls="internal")
    return PrivateIndex.objects.create(
        name="shelf", team=team, requested_by=lead, state="ready", deployment=placement.as_dict()
    )


def store(index: PrivateIndex, path: Path, actor) -> PackageFile:
    received = ReceivedFile(path=path, filename=path.name, sha256=file_sha256(path))
    return services.package_store(index=index, received=received, actor=actor)


@pytest.fixture
def release(shelf, lead, tmp_path) -> list[PackageFile]:
    """lib 2.0 with two wheels and an sdist, beside lib 1.0."""
    return [
        store(shelf, build_wheel(tmp_path, "lib", "1.0"), lead),
        store(shelf, build_wheel(tmp_path, "lib", "2.0"), lead),
        store(shelf, build_wheel(tmp_path, "lib", "2.0", tag="py39-none-any"), lead),
        store(shelf, build_sdist(tmp_path, "lib", "2.0"), lead),
    ]


def manifest_yanked(index: PrivateIndex) -> dict[str, bool | str]:
    return {f["filename"]: f["yanked"] for f in json.loads(index_manifest(index))["files"]}


def test_yanking_a_release_marks_all_its_files_with_the_reason_in_the_manifest_and_audits_it(shelf, publisher, release):
    result = services.package_yank(index=shelf, project="LIB", version="2", reason="corrupt  build", actor=publisher)

    assert result.files == result.changed == sorted(p.filename for p in release[1:])
    assert result.yanked and result.reason == "corrupt build"
    assert manifest_yanked(shelf) == {"lib-1.0-py3-none-any.whl": False} | dict.fromkeys(result.files, "corrupt build")
    event = AuditEvent.objects.get(action="package.yanked")
    assert event.actor == publisher and event.details["reason"] == "corrupt build"
    assert event.details["files"] == result.files


def test_un_yanking_one_file_leaves_the_rest_of_the_release_yanked_and_repeating_changes_nothing(shelf, lead, release):
    services.package_yank(index=shelf, project="lib", version="2.0", reason="", actor=lead)
    wheel = release[1].filename

    result = services.package_yank(index=shelf, project="lib", filename=wheel, actor=lead, undo=True)
    again = services.package_yank(index=shelf, project="lib", filename=wheel, actor=lead, undo=True)

    assert result.changed == [wheel] and again.changed == []
    yanked = manifest_yanked(shelf)
    assert yanked[wheel] is False and yanked[release[2].filename] is True  # yanked without a reason
    assert AuditEvent.objects.filter(action="package.unyanked").count() == 1


def test_yank_refuses_members_and_unknown_releases(shelf, member, lead, release):
    with pytest.raises(PermissionDenied):
        services.package_yank(index=shelf, project="lib", version="2.0", reason="x", actor=member)
    with pytest.raises(ValidationError):
        services.package_yank(index=shelf, project="lib", version="9.9", reason="x", actor=lead)
    assert not PackageFile.objects.filter(yanked=True).exists()


def test_publisher_yanks_a_release_on_the_package_page_which_then_shows_the_reason(shelf, publisher_client, release):
    response = publisher_client.post(
        f"/indexes/{shelf.pk}/packages/yank/", {"project": "lib", "version": "2.0", "reason": "broken <build>"}
    )

    assert response.status_code == 302
    page = publisher_client.get(f"/indexes/{shelf.pk}/packages/").content.decode()
    assert page.count("yanked: broken &lt;build&gt;") == 3
    assert "Un-yank release" in page and 'name="csrfmiddlewaretoken"' in page
    publisher_client.post(f"/indexes/{shelf.pk}/packages/yank/", {"file": release[3].pk, "undo": "1"})
    assert not PackageFile.objects.get(pk=release[3].pk).yanked


def test_yanking_on_the_page_is_forbidden_to_a_member_and_hidden_from_another_team(
    shelf, member_client, other_lead_client, release
):
    data = {"project": "lib", "version": "2.0", "reason": "x"}

    assert member_client.post(f"/indexes/{shelf.pk}/packages/yank/", data).status_code == 403
    assert other_lead_client.post(f"/indexes/{shelf.pk}/packages/yank/", data).status_code == 404
    assert "Yank release" not in member_client.get(f"/indexes/{shelf.pk}/packages/").content.decode()
    assert not PackageFile.objects.filter(yanked=True).exists()


def test_yank_page_requires_csrf(shelf, publisher, release):
    client = Client(enforce_csrf_checks=True)
    client.force_login(publisher)
    response = client.post(f"/indexes/{shelf.pk}/packages/yank/", {"project": "lib", "version": "2.0"})

    assert response.status_code == 403
    assert not PackageFile.objects.filter(yanked=True).exists()


def test_yank_command_yanks_and_undoes_by_index_name_or_id_and_prints_json(shelf, release):
    out = StringIO()
    call_command("yank", "shelf", "lib", "2.0", "--reason", "security issue", "--json", stdout=out)
    printed = json.loads(out.getvalue())
    assert printed["yanked"] is True and printed["reason"] == "security issue" and len(printed["files"]) == 3

    out = StringIO()
    call_command("yank", str(shelf.pk), "lib", "2.0", "--undo", stdout=out)
    assert "lib 2.0 on shelf: not yanked; 3 file(s), 3 changed" in out.getvalue()
    assert not PackageFile.objects.filter(yanked=True).exists()
    assert AuditEvent.objects.filter(action__in=["package.yanked", "package.unyanked"], actor=None).count() == 2


@pytest.mark.parametrize(
    ("index", "project", "version", "message"),
    [("nope", "lib", "2.0", "No index named"), ("shelf", "nope", "1.0", "No file of nope 1.0"),
     ("shelf", "lib", "3.0", "No file of lib 3.0")],
)  # fmt: skip
def test_yank_command_fails_with_one_line_for_an_unknown_index_project_or_version(
    shelf, release, index, project, version, message
):
    with pytest.raises(CommandError) as raised:
        call_command("yank", index, project, version, "--reason", "x")

    assert message in str(raised.value) and "\n" not in str(raised.value)


def forget_metadata(index: PrivateIndex, package: PackageFile) -> None:
    """As a file uploaded before metadata files existed: no metadata file, nothing recorded."""
    get_store().delete_file(index_spec(index), SHARE_PACKAGES, services.metadata_path(package.filename))
    PackageFile.objects.filter(pk=package.pk).update(metadata_sha256="", requires_python="")


def test_backfill_writes_missing_metadata_files_records_their_hash_and_is_idempotent(shelf, lead, tmp_path):
    old = store(shelf, build_wheel(tmp_path, "old", "1.0", requires_python=">=3.9"), lead)
    recent = store(shelf, build_wheel(tmp_path, "recent", "1.0"), lead)
    forget_metadata(shelf, old)

    out = StringIO()
    call_command("backfill_metadata", "shelf", "--json", stdout=out)
    second = StringIO()
    call_command("backfill_metadata", "--json", stdout=second)

    assert json.loads(out.getvalue()) == [{"index": "shelf", "written": 1, "failed": {}, "files": [old.filename]}]
    assert json.loads(second.getvalue()) == []
    old.refresh_from_db()
    data = b"".join(get_store().read_file(index_spec(shelf), SHARE_PACKAGES, services.metadata_path(old.filename)))
    assert old.metadata_sha256 == hashlib.sha256(data).hexdigest() and b"Name: old" in data
    assert old.requires_python == ">=3.9"
    assert PackageFile.objects.get(pk=recent.pk).metadata_sha256  # untouched
    assert AuditEvent.objects.filter(action="packages.metadata_backfilled").count() == 1


def test_backfill_leaves_a_wheel_whose_bytes_changed_on_the_share_and_says_so(shelf, lead, tmp_path):
    package = store(shelf, build_wheel(tmp_path, "swapped", "1.0"), lead)
    forget_metadata(shelf, package)
    other = build_wheel(tmp_path / "other", "swapped", "1.0", extra_files={"swapped/x.py": b"evil = 1\n"})
    (get_store().share_dir(index_spec(shelf), SHARE_PACKAGES) / package.filename).write_bytes(other.read_bytes())

    with pytest.raises(CommandError, match="1 wheel"):
        call_command("backfill_metadata", "shelf", stdout=StringIO(), stderr=StringIO())

    assert PackageFile.objects.get(pk=package.pk).metadata_sha256 == ""
