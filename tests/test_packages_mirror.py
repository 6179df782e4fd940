"""Mirror from PyPI (reachable from these machines): pip download for a target Python and
platform, then every file validated and stored like an upload."""

from __future__ import annotations

import subprocess
import sys

import pytest

from packages_ui import services
from packages_ui.models import MirrorRun, PackageFile
from portal.models import AuditEvent
from provisioning.drivers.backend import get_store
from provisioning.models import PrivateIndex
from provisioning.services import index_spec
from provisioning.spec import SHARE_PACKAGES, Placement
from tests.driver_support import get_driver


@pytest.fixture
def shelf_index(team, lead) -> PrivateIndex:
    """A ready index whose package share is a folder; no pypiserver runs (the mirror only writes)."""
    placement = Placement(hostname="localhost", https_port=1, http_port=2, server_port=3, tls="internal")
    return PrivateIndex.objects.create(
        name="shelf", team=team, requested_by=lead, state="ready", deployment=placement.as_dict()
    )


def mirror(client, index, requirements: str) -> MirrorRun:
    response = client.post(
        f"/indexes/{index.pk}/packages/mirror/",
        {"requirements": requirements, "python_version": "3.12", "platform": "manylinux2014_x86_64"},
    )
    assert response.status_code == 302, response.content.decode()
    run = MirrorRun.objects.latest("created_at")
    # The job's work, run here: the test's transaction never commits, so nothing reaches RQ.
    services.mirror_perform(run.pk)
    run.refresh_from_db()
    return run


@pytest.mark.e2e
def test_mirror_downloads_a_pure_python_package_and_stores_it(shelf_index, publisher, publisher_client) -> None:
    run = mirror(publisher_client, shelf_index, "six==1.16.0")

    assert run.state == "done", run.error + run.log
    assert [r["outcome"] for r in run.results] == ["stored"]
    row = PackageFile.objects.get()
    assert (row.filename, row.source, row.uploaded_by) == ("six-1.16.0-py2.py3-none-any.whl", "mirror", publisher)
    files = [f.path for f in get_store().list_files(index_spec(shelf_index), SHARE_PACKAGES)]
    # The wheel, and its METADATA as a PEP 658 file: a real PyPI wheel passes the same checks.
    assert files == ["metadata/six-1.16.0-py2.py3-none-any.whl.metadata", "six-1.16.0-py2.py3-none-any.whl"]
    assert row.metadata_sha256 and row.requires_python == ">=2.7, !=3.0.*, !=3.1.*, !=3.2.*"
    page = publisher_client.get(f"/indexes/{shelf_index.pk}/packages/mirror/{run.pk}/").content.decode()
    assert "six-1.16.0-py2.py3-none-any.whl" in page and "Done" in page


@pytest.mark.e2e
def test_mirror_of_a_project_that_does_not_exist_fails_clearly_and_stores_nothing(
    shelf_index, publisher_client
) -> None:
    run = mirror(publisher_client, shelf_index, "six==1.16.0\nportal-h5-no-such-project-xyz==1.0")

    assert run.state == "failed"
    assert "No matching distribution found for portal-h5-no-such-project-xyz" in run.error
    assert not PackageFile.objects.exists()
    assert get_driver().list_files(index_spec(shelf_index), SHARE_PACKAGES) == []


@pytest.mark.e2e
def test_mirror_of_a_version_with_no_wheel_for_the_target_fails_clearly(shelf_index, publisher_client) -> None:
    # PyYAML 5.4.1 (2021) has no wheels for Python 3.12.
    run = mirror(publisher_client, shelf_index, "PyYAML==5.4.1")

    assert run.state == "failed"
    assert "No matching distribution found for PyYAML==5.4.1" in run.error
    assert not PackageFile.objects.exists()


@pytest.mark.parametrize(
    "requirements, message",
    [
        ("--index-url https://evil.example/simple/ six", "options are not allowed"),
        ("six @ https://evil.example/six.whl", "direct URLs are not allowed"),
        ("not a requirement!!", "not a requirement!!"),
        ("", "This field is required"),
    ],
)
def test_mirror_form_refuses_options_urls_and_nonsense(shelf_index, publisher_client, requirements, message) -> None:
    response = publisher_client.post(
        f"/indexes/{shelf_index.pk}/packages/mirror/",
        {"requirements": requirements, "python_version": "3.12", "platform": "manylinux2014_x86_64"},
    )

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not MirrorRun.objects.exists()


def test_members_cannot_start_a_mirror(shelf_index, member_client) -> None:
    response = member_client.post(
        f"/indexes/{shelf_index.pk}/packages/mirror/",
        {"requirements": "six", "python_version": "3.12", "platform": "manylinux2014_x86_64"},
    )

    assert response.status_code == 403
    assert not MirrorRun.objects.exists()


def test_a_mirror_run_that_breaks_is_marked_failed_and_stops_pip(shelf_index, publisher, monkeypatch) -> None:
    run = MirrorRun.objects.create(
        index=shelf_index, requested_by=publisher, requirements="six", python_version="3.12",
        platform="manylinux2014_x86_64",
    )  # fmt: skip
    started: list[subprocess.Popen] = []

    class BreakingPip(subprocess.Popen):
        """A "pip" that prints a line and keeps running; reading its second line fails."""

        def __init__(self, argv, **kwargs) -> None:
            script = "import time; print('Collecting six', flush=True); time.sleep(60)"
            super().__init__([sys.executable, "-c", script], **kwargs)
            started.append(self)
            pipe = self.stdout

            def lines():
                yield pipe.readline()
                raise RuntimeError("the log could not be saved")

            self.stdout = lines()
            self._pipe = pipe

    monkeypatch.setattr(services.subprocess, "Popen", BreakingPip)

    with pytest.raises(RuntimeError):
        services.mirror_perform(run.pk)

    run.refresh_from_db()
    assert run.state == "failed" and run.finished_at is not None
    assert "the log could not be saved" in run.error
    assert AuditEvent.objects.filter(action="packages.mirror_failed").count() == 1
    assert started[0].poll() is not None  # pip was stopped
    started[0]._pipe.close()
