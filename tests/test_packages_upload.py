"""Upload through the package page onto the local driver's share (no processes needed here):
bad input refused with nothing written or recorded, duplicates, permissions, coalesced restart,
resync. The end-to-end path (restart, served check, pip, twine) is in test_packages_e2e.py."""

from __future__ import annotations

import contextlib
import hashlib
import html
import io
import os
import subprocess
from pathlib import Path
from urllib.parse import quote

import django_rq
import pytest
from django.test import Client
from django.test.utils import override_settings
from django.utils import timezone

from packages_ui import services
from packages_ui.models import PackageFile
from packages_ui.testing import build_sdist, build_wheel, build_zip_bomb
from portal.models import AuditEvent
from provisioning.drivers.base import DriverError, get_driver
from provisioning.models import PrivateIndex
from provisioning.services import index_spec
from provisioning.spec import SHARE_PACKAGES, Placement


@pytest.fixture(params=["local", "azure"])
def shelf_index(request, team, lead) -> PrivateIndex:
    """A ready index whose package share exists, on each driver: a folder (local driver, no
    pypiserver started: uploads only write) or an Azure file share in the emulator (built by
    the Azure driver's own deploy steps)."""
    index = PrivateIndex.objects.create(name="shelf", team=team, requested_by=lead, state="ready")
    if request.param == "azure":
        request.getfixturevalue("azure_emulator")
        driver = get_driver()
        placement = driver.reserve(index_id=index.pk, name=index.name, previous=None)
        index.deployment = placement.as_dict()
        index.save()
        for step in driver.deploy_steps(index_spec(index)):
            step.run()
    else:
        index.deployment = Placement(
            hostname="localhost", https_port=1, http_port=2, read_port=3, publish_port=4, tls="internal"
        ).as_dict()
        index.save()
    return index


def share_files(index: PrivateIndex) -> list[str]:
    return [f.path for f in get_driver().list_files(index_spec(index), SHARE_PACKAGES)]


def share_raw_entries(index: PrivateIndex) -> list[str]:
    """Everything on the package share, temporary upload files included (list_files hides them)."""
    driver, spec = get_driver(), index_spec(index)
    if driver.name == "local":
        folder = driver.share_dir(spec, SHARE_PACKAGES)
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    return sorted(e["name"] for e in driver._share(spec, SHARE_PACKAGES).list_directories_and_files())


def share_bytes(index: PrivateIndex, filename: str) -> bytes:
    return b"".join(get_driver().read_file(index_spec(index), SHARE_PACKAGES, filename))


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
    assert "Stored" in with_wheel.content.decode()


def test_upload_refuses_a_duplicate_file_name(shelf_index, publisher_client, tmp_path) -> None:
    wheel = build_wheel(tmp_path, "demo-pkg", "1.0")
    upload(publisher_client, shelf_index, wheel.read_bytes(), wheel.name)
    other = build_wheel(tmp_path / "..", "demo-pkg", "1.0", extra_files={"demo_pkg/x.py": b"changed"})

    response = upload(publisher_client, shelf_index, other.read_bytes(), wheel.name)

    assert response.status_code == 400
    assert "already exists" in html.unescape(response.content.decode())
    assert share_bytes(shelf_index, wheel.name) == wheel.read_bytes()


def test_admin_may_overwrite_an_existing_file_explicitly(
    shelf_index, publisher_client, portal_admin, portal_admin_client, tmp_path
) -> None:
    wheel = build_wheel(tmp_path, "demo-pkg", "1.0")
    upload(publisher_client, shelf_index, wheel.read_bytes(), wheel.name)
    replacement = build_wheel(tmp_path / "..", "demo-pkg", "1.0", extra_files={"demo_pkg/x.py": b"fixed"})
    url_name = quote(wheel.name)

    refused = upload(portal_admin_client, shelf_index, replacement.read_bytes(), wheel.name)
    response = portal_admin_client.generic(
        "POST", f"/indexes/{shelf_index.pk}/packages/upload/?filename={url_name}&overwrite=1",
        data=replacement.read_bytes(), content_type="application/octet-stream", HTTP_HX_REQUEST="true",
    )  # fmt: skip

    assert refused.status_code == 400
    assert response.status_code == 201
    row = PackageFile.objects.get()
    assert row.uploaded_by == portal_admin
    assert AuditEvent.objects.filter(action="package.overwritten").count() == 1


def test_publisher_cannot_overwrite_even_when_asking(shelf_index, publisher_client, tmp_path) -> None:
    wheel = build_wheel(tmp_path, "demo-pkg", "1.0")
    upload(publisher_client, shelf_index, wheel.read_bytes(), wheel.name)

    response = publisher_client.generic(
        "POST", f"/indexes/{shelf_index.pk}/packages/upload/?filename={quote(wheel.name)}&overwrite=1",
        data=wheel.read_bytes(), content_type="application/octet-stream", HTTP_HX_REQUEST="true",
    )  # fmt: skip

    assert response.status_code == 400


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


def test_a_batch_of_uploads_queues_one_restart_job(
    shelf_index, publisher_client, tmp_path, django_capture_on_commit_callbacks
) -> None:
    queue = django_rq.get_queue("packages")
    for version in ("1.0", "1.1", "1.2"):
        wheel = build_wheel(tmp_path, "demo-pkg", version)
        with django_capture_on_commit_callbacks(execute=True):
            assert upload(publisher_client, shelf_index, wheel.read_bytes(), wheel.name).status_code == 201

    assert queue.count == 1
    assert services.restart_is_pending(shelf_index)


def test_an_upload_during_a_running_restart_queues_the_next_one(
    shelf_index, django_capture_on_commit_callbacks
) -> None:
    queue = django_rq.get_queue("packages")
    with django_capture_on_commit_callbacks(execute=True):
        services.restart_request(index=shelf_index)
    # What the job does as it starts: from now on a new change needs a new job.
    django_rq.get_connection("packages").delete(services._queued_key(shelf_index.pk))
    with django_capture_on_commit_callbacks(execute=True):
        services.restart_request(index=shelf_index)
        services.restart_request(index=shelf_index)

    assert queue.count == 2


def test_delete_removes_file_from_share_and_record(shelf_index, publisher_client, member_client, tmp_path) -> None:
    wheel = build_wheel(tmp_path, "demo-pkg", "1.0")
    upload(publisher_client, shelf_index, wheel.read_bytes(), wheel.name)
    row = PackageFile.objects.get()

    refused = member_client.post(f"/indexes/{shelf_index.pk}/packages/files/{row.pk}/delete/")
    response = publisher_client.post(f"/indexes/{shelf_index.pk}/packages/files/{row.pk}/delete/")

    assert refused.status_code == 403
    assert response.status_code == 302
    assert share_files(shelf_index) == []
    assert not PackageFile.objects.exists()


def test_resync_rebuilds_records_from_the_share(shelf_index, publisher_client, tmp_path) -> None:
    kept = build_wheel(tmp_path, "kept", "1.0")
    gone = build_wheel(tmp_path, "gone", "1.0")
    for wheel in (kept, gone):
        upload(publisher_client, shelf_index, wheel.read_bytes(), wheel.name)
    driver, spec = get_driver(), index_spec(shelf_index)
    driver.delete_file(spec, SHARE_PACKAGES, gone.name)
    found = build_wheel(tmp_path, "found", "2.0")
    with open(found, "rb") as handle:
        driver.write_file(spec, SHARE_PACKAGES, found.name, handle, size=found.stat().st_size)
    driver.write_file(spec, SHARE_PACKAGES, "README.txt", io.BytesIO(b"hi"), size=2)

    response = publisher_client.post(f"/indexes/{shelf_index.pk}/packages/resync/")

    assert response.status_code == 302
    rows = {p.filename: p for p in PackageFile.objects.all()}
    assert set(rows) == {kept.name, found.name}
    assert rows[found.name].source == "resync"
    assert rows[found.name].sha256 == __import__("hashlib").sha256(found.read_bytes()).hexdigest()


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


def test_resync_rehashes_a_changed_file_and_marks_it_not_yet_live(shelf_index, publisher_client, tmp_path) -> None:
    wheel = build_wheel(tmp_path, "demo-pkg", "1.0")
    upload(publisher_client, shelf_index, wheel.read_bytes(), wheel.name)
    PackageFile.objects.update(state=PackageFile.State.LIVE, live_at=timezone.now())
    changed = build_wheel(tmp_path / "..", "demo-pkg", "1.0", extra_files={"demo_pkg/x.py": b"changed"})
    with open(changed, "rb") as handle:
        get_driver().write_file(
            index_spec(shelf_index), SHARE_PACKAGES, wheel.name, handle, size=changed.stat().st_size
        )

    publisher_client.post(f"/indexes/{shelf_index.pk}/packages/resync/")

    row = PackageFile.objects.get()
    assert row.sha256 == hashlib.sha256(changed.read_bytes()).hexdigest()
    assert (row.state, row.live_at) == ("stored", None)


def test_resync_reports_a_share_it_cannot_read_instead_of_failing(
    shelf_index, publisher_client, tmp_path, monkeypatch
) -> None:
    found = build_wheel(tmp_path, "found", "2.0")
    with open(found, "rb") as handle:
        get_driver().write_file(index_spec(shelf_index), SHARE_PACKAGES, found.name, handle, size=found.stat().st_size)

    def unreadable(self, spec, share, path):
        raise DriverError("the share is offline")

    monkeypatch.setattr(type(get_driver()), "read_file", unreadable)
    response = publisher_client.post(f"/indexes/{shelf_index.pk}/packages/resync/", follow=True)

    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == [
        "shelf: The share could not be read: the share is offline"
    ]
    assert not PackageFile.objects.exists()
    assert not AuditEvent.objects.filter(action="packages.resynced").exists()


def test_manual_restart_is_audited_and_refused_for_an_index_out_of_service(
    shelf_index, publisher_client, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        accepted = publisher_client.post(f"/indexes/{shelf_index.pk}/packages/restart/", follow=True)
    PrivateIndex.objects.filter(pk=shelf_index.pk).update(state="deleting")
    refused = publisher_client.post(f"/indexes/{shelf_index.pk}/packages/restart/", follow=True)

    assert [str(m) for m in accepted.context["messages"]] == ["shelf: pypiserver restarts in a moment."]
    assert AuditEvent.objects.filter(action="packages.restart_requested").count() == 1
    assert services.restart_is_pending(shelf_index)
    assert [str(m) for m in refused.context["messages"]] == [
        "shelf: The index is deleting; pypiserver cannot be restarted now."
    ]


def test_a_failed_restart_leaves_an_index_being_torn_down_alone(shelf_index, monkeypatch) -> None:
    def restart_while_teardown_requested(self, spec):
        PrivateIndex.objects.filter(pk=shelf_index.pk).update(state="deleting")
        raise DriverError("pypiserver did not come back")

    monkeypatch.setattr(type(get_driver()), "restart", restart_while_teardown_requested)
    django_rq.get_connection("packages").set(services._pending_key(shelf_index.pk), "1")

    with pytest.raises(DriverError):
        services.packages_restart_perform(shelf_index.pk)

    shelf_index.refresh_from_db()
    assert shelf_index.state == "deleting"
    assert AuditEvent.objects.filter(action="packages.restart_failed").count() == 1


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
        hostname="localhost", https_port=1, http_port=2, read_port=3, publish_port=4, tls="internal"
    ).as_dict()
    index.save()
    folder = get_driver().share_dir(index_spec(index), SHARE_PACKAGES)
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
