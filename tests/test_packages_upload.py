"""Upload through the package page onto the local driver's share (no processes needed here):
bad input refused with nothing written or recorded, immutability, permissions, coalesced
refresh, integrity check and adoption. The end-to-end path (refresh, served check, pip, twine)
is in test_packages_e2e.py."""

from __future__ import annotations

import contextlib
import hashlib
import html
import io
import json
import os
import subprocess
from pathlib import Path
from urllib.parse import quote

import django_rq
import pytest
from django.test import Client
from django.test.utils import override_settings

from packages_ui import services
from packages_ui.models import PackageFile
from portal.models import AuditEvent
from provisioning.drivers.backend import get_runtime, get_store
from provisioning.drivers.base import DriverError
from provisioning.models import PrivateIndex
from provisioning.services import index_spec
from provisioning.spec import MANIFEST_PATH, SHARE_CONFIG, SHARE_PACKAGES, Placement
from tests.builders import build_sdist, build_wheel, build_zip_bomb


@pytest.fixture(params=["local", "azure"])
def shelf_index(request, team, lead) -> PrivateIndex:
    """A ready index whose package share exists, on each driver: a folder (local driver, no
    pypiserver started: uploads only write) or an Azure file share in the emulator (built by
    the Azure driver's own deploy steps)."""
    index = PrivateIndex.objects.create(name="shelf", team=team, requested_by=lead, state="ready")
    if request.param == "azure":
        request.getfixturevalue("azure_emulator")
        runtime = get_runtime()
        placement = runtime.reserve(index_id=index.pk, name=index.name, previous=None)
        index.deployment = placement.as_dict()
        index.save()
        for step in runtime.deploy_steps(index_spec(index)):
            step.run()
    else:
        index.deployment = Placement(
            hostname="localhost", https_port=1, http_port=2, server_port=3, tls="internal"
        ).as_dict()
        index.save()
    return index


def share_files(index: PrivateIndex) -> list[str]:
    """The distributions on the package share (metadata files live below metadata/)."""
    return [f.path for f in get_store().list_files(index_spec(index), SHARE_PACKAGES) if "/" not in f.path]


def share_raw_entries(index: PrivateIndex) -> list[str]:
    """Everything on the package share, temporary upload files included (list_files hides them)."""
    store, spec = get_store(), index_spec(index)
    if store.name == "local":
        folder = store.share_dir(spec, SHARE_PACKAGES)
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    return sorted(e["name"] for e in store._share(spec, SHARE_PACKAGES).list_directories_and_files())


def share_bytes(index: PrivateIndex, filename: str) -> bytes:
    return b"".join(get_store().read_file(index_spec(index), SHARE_PACKAGES, filename))


def upload(client: Client, index: PrivateIndex, data: bytes, filename: str, **extra):
    return client.generic(
        "POST", f"/indexes/{index.pk}/packages/upload/?filename={quote(filename)}", data=data,
        content_type="application/octet-stream", HTTP_HX_REQUEST="true", **extra,
    )  # fmt: skip


def _file(build):
    def make(tmp: Path) -> tuple[bytes, str]:
        path = build(tmp)
        return path.read_bytes(), path.name

    return make


BAD_UPLOADS = {
    "not a distribution": (lambda t: (b"hello", "notes.txt"), "Not a Python distribution"),
    "metadata names another project": (
        _file(lambda t: build_wheel(t, "demo-pkg", "1.0", meta_name="other")), "names the project 'other'"),
    "metadata gives another version": (
        _file(lambda t: build_wheel(t, "demo-pkg", "1.0", meta_version="2.0")), "gives version '2.0'"),
    "corrupt zip": (lambda t: (b"PK\x03\x04garbage" * 10, "demo_pkg-1.0-py3-none-any.whl"), "not a valid zip"),
    "zip bomb": (_file(lambda t: build_zip_bomb(t, "bomb-1.0-py3-none-any.whl", megabytes=40)), "zip bomb"),
    "over the size limit": (_file(lambda t: build_wheel(t, "demo-pkg", "1.0", payload_bytes=300_000)), "limit"),
    "path traversal": (lambda t: (b"PK", "../../evil-1.0-py3-none-any.whl"), "must not contain a path"),
    "odd Unicode": (lambda t: (b"PK", "d\u0435mo-1.0-py3-none-any.whl"), "ASCII"),
    "spaces": (lambda t: (b"PK", "demo pkg-1.0.tar.gz"), "no spaces"),
    "empty file": (lambda t: (b"", "demo_pkg-1.0-py3-none-any.whl"), "The file is empty"),
    "no file name": (lambda t: (b"PK", ""), "no name"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_UPLOADS), ids=list(BAD_UPLOADS))
@override_settings(PACKAGES_MAX_UPLOAD_BYTES=256_000, PACKAGES_MAX_UNCOMPRESSED_BYTES=32 * 1024 * 1024)
def test_upload_rejects_bad_input_and_writes_and_records_nothing(
    case: str, shelf_index, publisher_client, tmp_path
) -> None:
    build, fragment = BAD_UPLOADS[case]
    data, filename = build(tmp_path)
    events_before = AuditEvent.objects.count()

    response = upload(publisher_client, shelf_index, data, filename)

    assert response.status_code == 400
    assert fragment in html.unescape(response.content.decode())
    assert share_raw_entries(shelf_index) == []
    assert not PackageFile.objects.exists()
    assert AuditEvent.objects.count() == events_before


class ShortBody(io.RawIOBase):
    """A request body whose client goes away halfway (fewer bytes than Content-Length)."""

    def __init__(self, data: bytes) -> None:
        self.stream = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self.stream.read(size)


def test_interrupted_upload_leaves_nothing_behind(shelf_index, publisher_client, tmp_path, settings) -> None:
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "receiving")
    (tmp_path / "receiving").mkdir()
    wheel = build_wheel(tmp_path, "demo-pkg", "1.0", payload_bytes=200_000).read_bytes()
    half = wheel[: len(wheel) // 2]

    response = upload(
        publisher_client, shelf_index, half, "demo_pkg-1.0-py3-none-any.whl",
        CONTENT_LENGTH=str(len(wheel)), **{"wsgi.input": ShortBody(half)},
    )  # fmt: skip

    assert response.status_code == 400
    assert "interrupted" in html.unescape(response.content.decode())
    assert share_raw_entries(shelf_index) == []
    assert list((tmp_path / "receiving").iterdir()) == []
    assert not PackageFile.objects.exists()


def test_upload_stores_wheel_and_sdist_with_their_records(shelf_index, publisher, publisher_client, tmp_path) -> None:
    wheel = build_wheel(tmp_path, "Demo.Pkg", "1.0")
    sdist = build_sdist(tmp_path, "demo-pkg", "1.0")

    with_wheel = upload(publisher_client, shelf_index, wheel.read_bytes(), wheel.name)
    with_sdist = upload(publisher_client, shelf_index, sdist.read_bytes(), sdist.name)

    assert (with_wheel.status_code, with_sdist.status_code) == (201, 201)
    assert share_files(shelf_index) == sorted([wheel.name, sdist.name])
    row = PackageFile.objects.get(filename=wheel.name)
    assert (row.project, row.version, row.kind, row.state) == ("demo-pkg", "1.0", "wheel", "stored")
    assert row.uploaded_by == publisher and row.size == wheel.stat().st_size
    assert row.identity == "wheel:demo-pkg:1::py3-none-any"
    assert "Stored" in with_wheel.content.decode()
    # PEP 658: the wheel's METADATA, as published, beside it; an sdist has none.
    metadata = share_bytes(shelf_index, f"metadata/{wheel.name}.metadata")
    assert metadata.startswith(b"Metadata-Version") and row.metadata_sha256 == hashlib.sha256(metadata).hexdigest()
    assert PackageFile.objects.get(filename=sdist.name).metadata_sha256 == ""


def test_upload_refuses_a_duplicate_file_name(shelf_index, publisher_client, tmp_path) -> None:
    wheel = build_wheel(tmp_path, "demo-pkg", "1.0")
    upload(publisher_client, shelf_index, wheel.read_bytes(), wheel.name)
    other = build_wheel(tmp_path / "..", "demo-pkg", "1.0", extra_files={"demo_pkg/x.py": b"changed"})

    response = upload(publisher_client, shelf_index, other.read_bytes(), wheel.name)

    assert response.status_code == 400
    assert "already exists" in html.unescape(response.content.decode())
    assert share_bytes(shelf_index, wheel.name) == wheel.read_bytes()


def test_nobody_replaces_a_published_file_not_even_an_admin(
    shelf_index, publisher_client, portal_admin_client, tmp_path
) -> None:
    wheel = build_wheel(tmp_path, "demo-pkg", "1.0")
    upload(publisher_client, shelf_index, wheel.read_bytes(), wheel.name)
    replacement = build_wheel(tmp_path / "..", "demo-pkg", "1.0", extra_files={"demo_pkg/x.py": b"fixed"})

    for client in (publisher_client, portal_admin_client):
        response = client.generic(
            "POST", f"/indexes/{shelf_index.pk}/packages/upload/?filename={quote(wheel.name)}&overwrite=1",
            data=replacement.read_bytes(), content_type="application/octet-stream", HTTP_HX_REQUEST="true",
        )  # fmt: skip
        assert response.status_code == 400
        assert "File already exists" in html.unescape(response.content.decode())
    assert share_bytes(shelf_index, wheel.name) == wheel.read_bytes()


IMMUTABILITY = {
    # first file, second file, stored?  (versions are immutable, whatever the spelling)
    "same name": (("demo_pkg", "1.0", "py3-none-any"), ("demo_pkg", "1.0", "py3-none-any"), False),
    "other case and separator": (("foo_bar", "1.0", "py3-none-any"), ("Foo_Bar", "1.0", "py3-none-any"), False),
    "same PEP 440 version": (("goodpkg", "1.0", "py3-none-any"), ("goodpkg", "1.0.0", "py3-none-any"), False),
    "extra wheel for the release": (("demo_pkg", "1.0", "py3-none-any"), ("demo_pkg", "1.0", "py2.py3-none-any"), True),
    "next version": (("demo_pkg", "1.0", "py3-none-any"), ("demo_pkg", "1.1", "py3-none-any"), True),
}


@pytest.mark.parametrize("case", list(IMMUTABILITY), ids=list(IMMUTABILITY))
def test_immutability_is_decided_by_the_normalized_identity_not_the_spelling(
    case, shelf_index, publisher_client, tmp_path
) -> None:
    first, second, stored = IMMUTABILITY[case]
    one = build_wheel(tmp_path / "one", *first[:2], tag=first[2])
    two = build_wheel(tmp_path / "two", *second[:2], tag=second[2])
    assert upload(publisher_client, shelf_index, one.read_bytes(), one.name).status_code == 201

    response = upload(publisher_client, shelf_index, two.read_bytes(), two.name)

    assert (response.status_code == 201) is stored, html.unescape(response.content.decode())
    if not stored:
        assert "File already exists" in html.unescape(response.content.decode())
        assert share_files(shelf_index) == [one.name]
        assert share_bytes(shelf_index, one.name) == one.read_bytes()


def test_one_sdist_per_release_whatever_its_archive_format(shelf_index, publisher_client, tmp_path) -> None:
    tarball = build_sdist(tmp_path, "demo-pkg", "1.0")
    zipped = build_sdist(tmp_path, "demo-pkg", "1.0", fmt="zip")
    assert upload(publisher_client, shelf_index, tarball.read_bytes(), tarball.name).status_code == 201

    response = upload(publisher_client, shelf_index, zipped.read_bytes(), zipped.name)

    assert response.status_code == 400
    assert f"{zipped.name} is the same file as {tarball.name}" in html.unescape(response.content.decode())


def test_a_deleted_file_name_and_version_can_never_be_published_again(
    shelf_index, publisher_client, portal_admin_client, tmp_path
) -> None:
    wheel = build_wheel(tmp_path, "demo-pkg", "1.0")
    upload(publisher_client, shelf_index, wheel.read_bytes(), wheel.name)
    row = PackageFile.objects.get()
    portal_admin_client.post(f"/indexes/{shelf_index.pk}/packages/files/{row.pk}/delete/")
    other_bytes = build_wheel(tmp_path / "again", "demo-pkg", "1.0", extra_files={"demo_pkg/x.py": b"new"})

    response = upload(publisher_client, shelf_index, other_bytes.read_bytes(), wheel.name)

    assert response.status_code == 400
    assert "(deleted since)" in html.unescape(response.content.decode())
    assert share_files(shelf_index) == []


def test_multipart_form_upload_works_without_javascript(shelf_index, publisher_client, tmp_path) -> None:
    wheel = build_wheel(tmp_path, "demo-pkg", "1.0")
    with open(wheel, "rb") as handle:
        response = publisher_client.post(f"/indexes/{shelf_index.pk}/packages/upload/", {"files": [handle]})

    assert response.status_code == 302
    row = PackageFile.objects.get()
    assert row.filename == wheel.name
    assert row.sha256 == __import__("hashlib").sha256(wheel.read_bytes()).hexdigest()


def test_upload_needs_a_csrf_token(shelf_index, publisher, tmp_path) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(publisher)
    wheel = build_wheel(tmp_path, "demo-pkg", "1.0")

    response = upload(client, shelf_index, wheel.read_bytes(), wheel.name)

    assert response.status_code == 403
    assert not PackageFile.objects.exists()


def test_members_see_the_page_but_cannot_upload_and_other_teams_get_404(
    shelf_index, member_client, other_lead_client, tmp_path
) -> None:
    wheel = build_wheel(tmp_path, "demo-pkg", "1.0")

    assert member_client.get(f"/indexes/{shelf_index.pk}/packages/").status_code == 200
    assert upload(member_client, shelf_index, wheel.read_bytes(), wheel.name).status_code == 403
    assert other_lead_client.get(f"/indexes/{shelf_index.pk}/packages/").status_code == 404
    assert upload(other_lead_client, shelf_index, wheel.read_bytes(), wheel.name).status_code == 404
    assert other_lead_client.get(f"/indexes/{shelf_index.pk}/packages/tokens/").status_code == 404
    assert not PackageFile.objects.exists()


def test_listing_shows_projects_versions_and_files_and_filters(shelf_index, publisher_client, tmp_path) -> None:
    for name, version in (("alpha", "1.0"), ("alpha", "1.1"), ("beta-tools", "0.3")):
        wheel = build_wheel(tmp_path, name, version)
        upload(publisher_client, shelf_index, wheel.read_bytes(), wheel.name)

    page = publisher_client.get(f"/indexes/{shelf_index.pk}/packages/").content.decode()
    filtered = publisher_client.get(
        f"/indexes/{shelf_index.pk}/packages/?q=beta", HTTP_HX_REQUEST="true"
    ).content.decode()

    assert "alpha-1.1-py3-none-any.whl" in page and "beta_tools-0.3-py3-none-any.whl" in page
    assert page.index("alpha-1.1-") < page.index("alpha-1.0-")  # newest version first
    assert "beta_tools-0.3" in filtered and "alpha-1.0" not in filtered
    assert "<html" not in filtered  # the htmx answer is the listing partial only


def test_a_batch_of_uploads_queues_one_refresh_job(
    shelf_index, publisher_client, tmp_path, django_capture_on_commit_callbacks
) -> None:
    queue = django_rq.get_queue("packages")
    for version in ("1.0", "1.1", "1.2"):
        wheel = build_wheel(tmp_path, "demo-pkg", version)
        with django_capture_on_commit_callbacks(execute=True):
            assert upload(publisher_client, shelf_index, wheel.read_bytes(), wheel.name).status_code == 201

    assert queue.count == 1
    assert services.refresh_is_pending(shelf_index)


def test_an_upload_during_a_running_refresh_queues_the_next_one(
    shelf_index, django_capture_on_commit_callbacks
) -> None:
    queue = django_rq.get_queue("packages")
    with django_capture_on_commit_callbacks(execute=True):
        services.refresh_request(index=shelf_index)
    # What the job does as it starts: from now on a new change needs a new job.
    django_rq.get_connection("packages").delete(services._queued_key(shelf_index.pk))
    with django_capture_on_commit_callbacks(execute=True):
        services.refresh_request(index=shelf_index)
        services.refresh_request(index=shelf_index)

    assert queue.count == 2


def manifest_files(index: PrivateIndex) -> list[str]:
    manifest = b"".join(get_store().read_file(index_spec(index), SHARE_CONFIG, MANIFEST_PATH))
    return [f["filename"] for f in json.loads(manifest)["files"]]


def test_the_refresh_writes_the_manifest_the_index_serves_from_the_records(
    shelf_index, publisher_client, tmp_path, monkeypatch
) -> None:
    wheel = build_wheel(tmp_path, "demo-pkg", "1.0", requires_python=">=3.9")
    upload(publisher_client, shelf_index, wheel.read_bytes(), wheel.name)
    monkeypatch.setattr(services, "served_check", lambda **kwargs: [])  # no index server runs here
    django_rq.get_connection("packages").set(services._pending_key(shelf_index.pk), "1")

    services.packages_refresh_perform(shelf_index.pk)

    manifest = json.loads(b"".join(get_store().read_file(index_spec(shelf_index), SHARE_CONFIG, MANIFEST_PATH)))
    row = PackageFile.objects.get()
    assert manifest["upload_url"] == shelf_index.upload_url
    assert manifest["files"] == [{
        "filename": wheel.name, "project": "demo-pkg", "version": "1.0", "sha256": row.sha256, "size": row.size,
        "upload_time": row.uploaded_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "requires_python": ">=3.9",
        "yanked": False, "metadata_sha256": row.metadata_sha256,
    }]  # fmt: skip


def test_only_an_admin_deletes_and_the_file_leaves_the_manifest_before_the_share(
    shelf_index, publisher_client, member_client, portal_admin_client, tmp_path
) -> None:
    wheel = build_wheel(tmp_path, "demo-pkg", "1.0")
    upload(publisher_client, shelf_index, wheel.read_bytes(), wheel.name)
    row = PackageFile.objects.get()
    page = publisher_client.get(f"/indexes/{shelf_index.pk}/packages/").content.decode()

    refused = [
        c.post(f"/indexes/{shelf_index.pk}/packages/files/{row.pk}/delete/") for c in (member_client, publisher_client)
    ]
    response = portal_admin_client.post(f"/indexes/{shelf_index.pk}/packages/files/{row.pk}/delete/")

    assert "Only a portal admin can delete a file" in page and "/delete/" not in page
    assert [r.status_code for r in refused] == [403, 403]
    assert response.status_code == 302
    assert share_files(shelf_index) == [] and manifest_files(shelf_index) == []
    row.refresh_from_db()
    assert row.state == "deleted" and row.deleted_at is not None
    assert AuditEvent.objects.filter(action="package.deleted").count() == 1


def test_a_delete_while_the_share_is_down_says_so_keeps_the_bytes_and_queues_the_refresh(
    shelf_index, publisher_client, portal_admin_client, tmp_path, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    wheel = build_wheel(tmp_path, "demo-pkg", "1.0")
    upload(publisher_client, shelf_index, wheel.read_bytes(), wheel.name)
    row = PackageFile.objects.get()

    def share_offline(self, *args, **kwargs):
        raise DriverError("the config share is offline")

    with monkeypatch.context() as patched, django_capture_on_commit_callbacks(execute=True):
        patched.setattr(type(get_store()), "write_if_changed", share_offline)
        response = portal_admin_client.post(f"/indexes/{shelf_index.pk}/packages/files/{row.pk}/delete/", follow=True)

    assert response.status_code == 200
    assert "could not be updated yet (the config share is offline)" in response.content.decode()
    row.refresh_from_db()
    assert row.state == "deleted"
    assert share_files(shelf_index) == [wheel.name]  # still listed by the old manifest, so still sent
    assert services.refresh_is_pending(shelf_index)


def put_on_share(index: PrivateIndex, path: Path, name: str | None = None) -> None:
    """What someone with the storage key could do behind the portal's back."""
    with open(path, "rb") as handle:
        get_store().write_file(index_spec(index), SHARE_PACKAGES, name or path.name, handle, size=path.stat().st_size)


def test_the_integrity_check_flags_foreign_swapped_and_missing_files_and_serves_none_of_them(
    shelf_index, publisher_client, tmp_path
) -> None:
    kept, swapped, gone = (build_wheel(tmp_path, name, "1.0") for name in ("kept", "swapped", "gone"))
    for wheel in (kept, swapped, gone):
        upload(publisher_client, shelf_index, wheel.read_bytes(), wheel.name)
    # Same size, other bytes: only a hash comparison can tell.
    same_size = bytearray(swapped.read_bytes())
    same_size[-30] ^= 1
    (tmp_path / "swap").mkdir()
    (tmp_path / "swap" / swapped.name).write_bytes(bytes(same_size))
    put_on_share(shelf_index, tmp_path / "swap" / swapped.name)
    get_store().delete_file(index_spec(shelf_index), SHARE_PACKAGES, gone.name)
    foreign = build_wheel(tmp_path / "foreign", "foreign", "6.6")
    put_on_share(shelf_index, foreign)

    report = services.packages_integrity_check(index=shelf_index)
    services.refresh_manifest(shelf_index)

    assert (report.changed, report.missing, report.unrecorded) == ([swapped.name], [gone.name], [foreign.name])
    problems = dict(PackageFile.objects.values_list("filename", "problem"))
    assert problems == {kept.name: "", swapped.name: "changed", gone.name: "missing"}
    assert manifest_files(shelf_index) == [kept.name]  # never adopted silently, never served
    page = publisher_client.get(f"/indexes/{shelf_index.pk}/packages/").content.decode()
    assert "Files the portal did not write" in page and foreign.name in page
    assert AuditEvent.objects.filter(action="packages.integrity_problems").count() == 1


def test_resync_adopts_only_unrecorded_files_that_pass_the_upload_checks(
    shelf_index, publisher_client, portal_admin_client, tmp_path
) -> None:
    published = build_wheel(tmp_path, "published", "1.0")
    upload(publisher_client, shelf_index, published.read_bytes(), published.name)
    valid = build_wheel(tmp_path / "valid", "found", "2.0")
    bad = build_wheel(tmp_path / "bad", "liar", "1.0", meta_name="someone-else")
    respelled = build_wheel(tmp_path / "respelled", "Published", "1.0.0")
    for path in (valid, bad, respelled):
        put_on_share(shelf_index, path)

    refused = publisher_client.post(f"/indexes/{shelf_index.pk}/packages/resync/")
    response = portal_admin_client.post(f"/indexes/{shelf_index.pk}/packages/resync/", follow=True)

    assert refused.status_code == 403
    assert response.status_code == 200
    rows = {p.filename: p for p in PackageFile.objects.all()}
    assert set(rows) == {published.name, valid.name}
    assert rows[valid.name].source == "resync" and rows[valid.name].uploaded_by is None
    assert rows[valid.name].sha256 == hashlib.sha256(valid.read_bytes()).hexdigest()
    assert set(shelf_index.unrecorded_files.values_list("path", flat=True)) == {bad.name, respelled.name}
    assert "1 adopted" in str(next(iter(response.context["messages"])))


@override_settings(PACKAGES_MAX_UPLOAD_BYTES=256_000)
def test_multipart_form_reports_a_file_over_the_limit_and_still_stores_the_others(
    shelf_index, publisher_client, tmp_path
) -> None:
    big = build_wheel(tmp_path, "big-pkg", "1.0", payload_bytes=300_000)
    small = build_wheel(tmp_path, "small-pkg", "1.0")
    with open(big, "rb") as big_handle, open(small, "rb") as small_handle:
        response = publisher_client.post(
            f"/indexes/{shelf_index.pk}/packages/upload/", {"files": [big_handle, small_handle]},
            HTTP_HX_REQUEST="true",
        )  # fmt: skip

    page = html.unescape(response.content.decode())
    assert response.status_code == 400
    assert big.name in page and "larger than the limit" in page
    assert list(PackageFile.objects.values_list("filename", flat=True)) == [small.name]
    assert share_files(shelf_index) == [small.name]


def test_multipart_form_without_a_file_is_an_error(shelf_index, publisher_client) -> None:
    response = publisher_client.post(f"/indexes/{shelf_index.pk}/packages/upload/", {"overwrite": "0"}, follow=True)

    assert [str(m) for m in response.context["messages"]] == ["Choose at least one file to upload."]


def test_a_duplicate_is_refused_before_the_archive_is_read(
    shelf_index, publisher_client, tmp_path, monkeypatch
) -> None:
    wheel = build_wheel(tmp_path, "demo-pkg", "1.0")
    upload(publisher_client, shelf_index, wheel.read_bytes(), wheel.name)

    def no_validation(*args, **kwargs):
        raise AssertionError("a duplicate must be refused before validation")

    monkeypatch.setattr(services, "validate_distribution", no_validation)
    response = upload(publisher_client, shelf_index, wheel.read_bytes(), wheel.name)

    assert response.status_code == 400
    assert "already exists" in html.unescape(response.content.decode())


def test_resync_reports_a_share_it_cannot_read_instead_of_failing(
    shelf_index, portal_admin_client, tmp_path, monkeypatch
) -> None:
    found = build_wheel(tmp_path, "found", "2.0")
    with open(found, "rb") as handle:
        get_store().write_file(index_spec(shelf_index), SHARE_PACKAGES, found.name, handle, size=found.stat().st_size)

    def unreadable(self, spec, share, path):
        raise DriverError("the share is offline")

    monkeypatch.setattr(type(get_store()), "read_file", unreadable)
    response = portal_admin_client.post(f"/indexes/{shelf_index.pk}/packages/resync/", follow=True)

    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == [
        "shelf: The share could not be read: the share is offline"
    ]
    assert not PackageFile.objects.exists()
    assert not AuditEvent.objects.filter(action="packages.resynced").exists()


def test_manual_refresh_is_audited_and_refused_for_an_index_out_of_service(
    shelf_index, publisher_client, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        accepted = publisher_client.post(f"/indexes/{shelf_index.pk}/packages/refresh/", follow=True)
    PrivateIndex.objects.filter(pk=shelf_index.pk).update(state="deleting")
    refused = publisher_client.post(f"/indexes/{shelf_index.pk}/packages/refresh/", follow=True)

    assert [str(m) for m in accepted.context["messages"]] == ["shelf: The index is being refreshed."]
    assert AuditEvent.objects.filter(action="packages.refresh_requested").count() == 1
    assert services.refresh_is_pending(shelf_index)
    assert [str(m) for m in refused.context["messages"]] == [
        "shelf: The index is deleting; it cannot be refreshed now."
    ]


def test_a_failed_refresh_keeps_the_index_ready_and_serving_what_it_served(shelf_index, monkeypatch) -> None:
    def share_offline(self, *args, **kwargs):
        raise DriverError("the config share is offline")

    monkeypatch.setattr(type(get_store()), "write_if_changed", share_offline)
    django_rq.get_connection("packages").set(services._pending_key(shelf_index.pk), "1")

    with pytest.raises(DriverError):
        services.packages_refresh_perform(shelf_index.pk)

    shelf_index.refresh_from_db()
    assert shelf_index.state == "ready"
    assert AuditEvent.objects.filter(action="packages.refresh_failed").count() == 1


@contextlib.contextmanager
def unwritable(folder: Path):
    """The folder cannot be written: immutable as root (chmod does not stop root), else read-only."""
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
            pytest.skip("chattr +i does not work on this file system")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)


def test_a_package_share_that_cannot_be_written_gives_a_per_file_message_not_a_500(
    team, lead, publisher_client, tmp_path
) -> None:
    index = PrivateIndex.objects.create(name="frozen", team=team, requested_by=lead, state="ready")
    index.deployment = Placement(
        hostname="localhost", https_port=1, http_port=2, server_port=3, tls="internal"
    ).as_dict()
    index.save()
    folder = get_store().share_dir(index_spec(index), SHARE_PACKAGES)
    folder.mkdir(parents=True)
    wheel = build_wheel(tmp_path, "demo-pkg", "1.0")

    with unwritable(folder):
        response = upload(publisher_client, index, wheel.read_bytes(), wheel.name)
        with open(wheel, "rb") as handle:
            form = publisher_client.post(f"/indexes/{index.pk}/packages/upload/", {"files": [handle]}, follow=True)

    for page in (html.unescape(response.content.decode()), html.unescape(form.content.decode())):
        assert wheel.name in page and "share cannot be written" in page
    assert response.status_code == 400 and form.status_code == 200
    assert not PackageFile.objects.exists()
    assert list(folder.iterdir()) == []
