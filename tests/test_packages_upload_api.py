"""The PyPI legacy upload API (issue 9): the real twine CLI publishes through the portal's upload
URL (a live server) to a real index (local driver: pypiserver + Caddy over HTTPS), with the same
validation, record, audit entry and refresh as a page upload; refusals show the portal's reason
in twine's output; the body streams to disk within the size limit and a bounded memory."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import requests
from django.core.management import CommandError, call_command
from django.urls import reverse
from twine.commands.upload import skip_upload as twine_skip_upload
from twine.package import PackageFile as TwinePackageFile

from packages_ui.models import PackageFile
from packages_ui.upload_api import reason_phrase
from portal.models import AuditEvent
from provisioning.drivers.backend import get_runtime, get_store
from provisioning.services import credential_create, index_spec
from provisioning.spec import SHARE_PACKAGES
from tests.builders import build_wheel, build_zip_bomb
from tests.clients import clean_env, fresh_venv, pip_install, run

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TWINE = Path(sys.executable).parent / "twine"
UV = Path(sys.executable).parent / "uv"


@pytest.fixture
def upload_url(ready_index, live_server, settings) -> str:
    """The index's upload URL as the portal states it, served by the live server."""
    settings.PORTAL_BASE_URL = live_server.url
    return ready_index.upload_url


@pytest.fixture
def publish_token(ready_index, publisher) -> tuple[str, str]:
    credential, password = credential_create(index=ready_index, kind="publish", label="ci-publish", actor=publisher)
    return credential.username, password


@pytest.fixture
def read_token(ready_index, publisher) -> tuple[str, str]:
    credential, password = credential_create(index=ready_index, kind="read", label="laptop", actor=publisher)
    return credential.username, password


def twine_upload(url: str, token: tuple[str, str], *files: Path, options: tuple[str, ...] = ()):
    """The real twine CLI; its output with whitespace collapsed (rich wraps long lines)."""
    completed = subprocess.run(
        [str(TWINE), "upload", "--non-interactive", "--disable-progress-bar", "--repository-url", url,
         "-u", token[0], "-p", token[1], *options, *map(str, files)],
        capture_output=True, text=True, timeout=600, env=clean_env(COLUMNS="500"),
    )  # fmt: skip
    completed.output = " ".join((completed.stdout + completed.stderr).split())
    return completed


def on_share(index) -> list[str]:
    """The distributions on the package share (their PEP 658 metadata files live below metadata/)."""
    return [f.path for f in get_store().list_files(index_spec(index), SHARE_PACKAGES) if "/" not in f.path]


def wait_until_live(run_jobs, timeout: float = 60) -> None:
    """Run the refresh job(s) the live server queued until no file waits to be seen served."""
    deadline = time.monotonic() + timeout
    while PackageFile.objects.filter(state=PackageFile.State.STORED).exists() and time.monotonic() < deadline:
        run_jobs("packages")
        time.sleep(0.2)


def test_twine_publishes_through_the_portal_and_pip_installs_the_file_over_https_with_a_read_token(
    ready_index, upload_url, publish_token, read_token, publisher, run_jobs, tmp_path
) -> None:
    wheel = build_wheel(tmp_path, "api-demo", "1.2.0")

    uploaded = twine_upload(upload_url, publish_token, wheel)

    assert uploaded.returncode == 0, uploaded.output
    package = PackageFile.objects.get(index=ready_index)
    assert (package.filename, package.project, package.version) == (wheel.name, "api-demo", "1.2.0")
    assert package.sha256 == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert package.uploaded_by == publisher
    event = AuditEvent.objects.get(action="package.stored")
    assert event.actor == publisher
    assert event.details["token_label"] == "ci-publish"
    assert event.details["username"] == publish_token[0]
    assert on_share(ready_index) == [wheel.name]

    wait_until_live(run_jobs)
    package.refresh_from_db()
    assert package.state == PackageFile.State.LIVE

    ca = tmp_path / "ca.pem"
    ca.write_text(get_runtime().ca_certificate_pem(index_spec(ready_index)))
    parts = urlsplit(ready_index.url)
    netloc = f"{quote(read_token[0])}:{quote(read_token[1])}@{parts.netloc}"
    python = fresh_venv(tmp_path / "venv")
    installed = pip_install(python, "api-demo==1.2.0", index_url=parts._replace(netloc=netloc).geturl(), ca=ca)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert run([str(python), "-c", "import api_demo; print(api_demo.VERSION)"]).stdout.strip() == "1.2.0"


def test_twine_with_a_read_token_is_refused_and_shows_that_a_publish_token_is_needed(
    ready_index, upload_url, read_token, tmp_path
) -> None:
    refused = twine_upload(upload_url, read_token, build_wheel(tmp_path, "api-demo", "1.0"))

    assert refused.returncode != 0
    assert "403 Forbidden" in refused.output
    assert f"{read_token[0]} is a read token; uploading to {ready_index.name} needs a publish token" in refused.output
    assert not PackageFile.objects.exists() and on_share(ready_index) == []


def test_twine_with_a_wrong_password_gets_401_and_shows_why(ready_index, upload_url, publish_token, tmp_path) -> None:
    refused = twine_upload(upload_url, (publish_token[0], "wrong"), build_wheel(tmp_path, "api-demo", "1.0"))

    assert refused.returncode != 0
    assert "401 Unauthorized" in refused.output
    assert "Invalid or missing credentials" in refused.output
    assert not PackageFile.objects.exists() and on_share(ready_index) == []


def test_missing_credentials_a_signed_in_session_or_another_index_get_401_with_a_basic_challenge(
    ready_index, upload_url, publish_token, publisher_client, tmp_path
) -> None:
    wheel = build_wheel(tmp_path, "api-demo", "1.0")
    form = {":action": "file_upload", "protocol_version": "1"}
    path = reverse("packages_legacy_upload", args=[ready_index.pk])

    with wheel.open("rb") as content:
        # A portal session (and a POST with no CSRF token) is not a way to publish.
        response = publisher_client.post(path, {**form, "content": content})
    anonymous = requests.post(upload_url, data=form, files={"content": wheel.read_bytes()}, timeout=30)
    # A token of this index at another index's number (or none) is as good as no token.
    elsewhere = upload_url.replace(f"/{ready_index.pk}/", f"/{ready_index.pk + 1000}/")
    no_such_index = requests.post(elsewhere, data=form, files={"content": b"x"}, auth=publish_token, timeout=30)

    for answer in (response, anonymous, no_such_index):
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == 'Basic realm="package index uploads"'
    assert "Invalid or missing credentials" in anonymous.reason and "publish token" in anonymous.text
    assert ready_index.name not in anonymous.text + anonymous.reason
    assert not PackageFile.objects.exists()


def test_invalid_wheel_is_refused_with_the_validation_message_in_twines_output_and_nothing_stored(
    ready_index, upload_url, publish_token, tmp_path
) -> None:
    lying = build_wheel(tmp_path, "api-demo", "1.0", meta_name="someone-else")
    bomb = build_zip_bomb(tmp_path, "bomb-1.0-py3-none-any.whl", megabytes=64)

    refused_lying = twine_upload(upload_url, publish_token, lying)
    refused_bomb = twine_upload(upload_url, publish_token, bomb)

    assert refused_lying.returncode != 0 and refused_bomb.returncode != 0
    assert "400 Bad Request" in refused_lying.output
    assert "someone-else" in refused_lying.output, refused_lying.output
    assert "compress" in refused_bomb.output, refused_bomb.output
    assert not PackageFile.objects.exists()
    assert on_share(ready_index) == []
    assert not AuditEvent.objects.filter(action="package.stored").exists()


def test_a_second_upload_of_a_file_shows_file_already_exists_which_twine_counts_as_existing(
    ready_index, upload_url, publish_token, tmp_path
) -> None:
    wheel = build_wheel(tmp_path, "api-demo", "1.0")
    assert twine_upload(upload_url, publish_token, wheel).returncode == 0

    again = twine_upload(upload_url, publish_token, wheel)
    response = requests.post(
        upload_url, data={":action": "file_upload"}, files={"content": (wheel.name, wheel.read_bytes())},
        auth=publish_token, timeout=30,
    )  # fmt: skip

    assert again.returncode != 0
    assert "409 Conflict" in again.output and "File already exists" in again.output
    assert "Versions are immutable" in again.output
    # twine 7 refuses --skip-existing for any repository but PyPI before uploading; its rule for
    # "already there" (also what twine 6, Poetry and PDM apply) holds for this answer.
    assert twine_skip_upload(response, True, TwinePackageFile.from_filename(str(wheel), None))
    assert PackageFile.objects.count() == 1


def test_uv_publish_goes_through_the_portal_and_shows_its_refusals(
    ready_index, upload_url, publish_token, read_token, tmp_path
) -> None:
    wheel = build_wheel(tmp_path, "uv-demo", "1.0")

    def uv_publish(token: tuple[str, str]) -> str:
        completed = subprocess.run(
            [str(UV), "publish", "--publish-url", upload_url, "-u", token[0], "-p", token[1], str(wheel)],
            capture_output=True, text=True, timeout=120, env=clean_env(),
        )  # fmt: skip
        return f"exit {completed.returncode}: " + " ".join((completed.stdout + completed.stderr).split())

    refused = uv_publish(read_token)
    published = uv_publish(publish_token)
    again = uv_publish(publish_token)

    assert refused.startswith("exit 2") and "403 Forbidden" in refused and "needs a publish token" in refused
    assert published.startswith("exit 0"), published
    assert PackageFile.objects.get().filename == wheel.name
    assert again.startswith("exit 2") and "File already exists" in again


def test_a_sha256_digest_that_does_not_match_the_file_is_refused_and_nothing_stored(
    ready_index, upload_url, publish_token, tmp_path
) -> None:
    wheel = build_wheel(tmp_path, "api-demo", "1.0")
    form = {":action": "file_upload", "protocol_version": "1", "name": "api-demo", "version": "1.0",
            "filetype": "bdist_wheel", "sha256_digest": hashlib.sha256(b"other bytes").hexdigest()}  # fmt: skip

    response = requests.post(
        upload_url, data=form, files={"content": (wheel.name, wheel.read_bytes())}, auth=publish_token, timeout=30
    )

    assert response.status_code == 400
    assert "sha256_digest does not match" in response.reason and "sha256_digest does not match" in response.text
    assert not PackageFile.objects.exists() and on_share(ready_index) == []


def test_a_refusal_reason_is_one_latin_1_line_cut_to_length_and_the_body_has_the_whole_message(
    ready_index, upload_url, publish_token, tmp_path
) -> None:
    meta_name = "someone-" + "x" * 500
    wheel = build_wheel(tmp_path, "api-demo", "1.0", meta_name=meta_name)

    response = requests.post(
        upload_url, data={":action": "file_upload"}, files={"content": (wheel.name, wheel.read_bytes())},
        auth=publish_token, timeout=30,
    )  # fmt: skip

    assert response.status_code == 400
    assert response.reason.startswith("The METADATA names the project 'someone-xxx")
    assert len(response.reason) == 400 and response.reason.endswith("...")
    assert meta_name in response.text and "but the file name says 'api-demo'" in response.text
    # What a status line cannot carry is replaced, not sent broken.
    assert reason_phrase("Line one\nline\ttwo — ça, 名前\x00") == "Line one line two ? ça, ??"


def test_an_action_other_than_file_upload_is_refused(ready_index, upload_url, publish_token) -> None:
    form = {":action": "remove_pkg", "name": "api-demo", "version": "1.0"}

    response = requests.post(upload_url, data=form, files={"x": b""}, auth=publish_token, timeout=30)
    get = requests.get(upload_url, auth=publish_token, timeout=30)

    assert response.status_code == 400
    assert "only takes file_upload" in response.reason
    assert get.status_code == 405


def test_an_index_that_is_not_ready_refuses_uploads_with_its_state(
    ready_index, upload_url, publish_token, tmp_path
) -> None:
    ready_index.transition_to("failed")

    refused = twine_upload(upload_url, publish_token, build_wheel(tmp_path, "api-demo", "1.0"))

    assert refused.returncode != 0
    assert "503 Service Unavailable" in refused.output
    assert f"{ready_index.name} is failed; it takes uploads once it is ready" in refused.output


def test_a_file_over_the_size_limit_is_refused_and_nothing_is_stored(
    ready_index, upload_url, publish_token, settings, tmp_path
) -> None:
    settings.PACKAGES_MAX_UPLOAD_BYTES = 64 * 1024
    wheel = build_wheel(tmp_path, "api-demo", "1.0", payload_bytes=256 * 1024)

    refused = twine_upload(upload_url, publish_token, wheel)

    assert refused.returncode != 0
    assert "400 Bad Request" in refused.output and "larger than the limit of 64.0 KB" in refused.output
    assert not PackageFile.objects.exists() and on_share(ready_index) == []


def _memory(field: str) -> int:
    """A VmHWM (peak) or VmRSS (current) figure of this process, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/self/status")


def test_a_300_mb_upload_streams_to_disk_without_growing_the_portal_process_by_its_size(
    ready_index, upload_url, publish_token, tmp_path
) -> None:
    size = 300 * 1024 * 1024
    wheel = build_wheel(tmp_path, "big-demo", "1.0", payload_bytes=size)
    # The live server runs in this process: reset its peak-memory mark, then read it after.
    Path("/proc/self/clear_refs").write_text("5")
    before = _memory("VmHWM")
    assert before - _memory("VmRSS") < 16 * 1024 * 1024, "the peak was not reset"

    uploaded = twine_upload(upload_url, publish_token, wheel)

    grown = _memory("VmHWM") - before
    assert uploaded.returncode == 0, uploaded.output
    assert PackageFile.objects.get().size == wheel.stat().st_size
    assert grown < 64 * 1024 * 1024, f"peak RSS grew by {grown / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB upload"


def test_list_packages_lists_every_file_with_who_uploaded_it(
    ready_index, upload_url, publish_token, publisher_client, publisher, run_jobs, tmp_path
) -> None:
    by_twine = build_wheel(tmp_path, "api-demo", "1.0")
    by_page = build_wheel(tmp_path, "api-demo", "2.0")
    assert twine_upload(upload_url, publish_token, by_twine).returncode == 0
    page = publisher_client.post(
        f"/indexes/{ready_index.pk}/packages/upload/?filename={by_page.name}", data=by_page.read_bytes(),
        content_type="application/octet-stream", HTTP_HX_REQUEST="true",
    )  # fmt: skip
    assert page.status_code == 201
    wait_until_live(run_jobs)

    as_json, as_table = StringIO(), StringIO()
    call_command("list_packages", ready_index.name, "--json", stdout=as_json)
    call_command("list_packages", str(ready_index.pk), stdout=as_table)

    rows = {row["filename"]: row for row in json.loads(as_json.getvalue())}
    assert set(rows) == {by_twine.name, by_page.name}
    twine_row = rows[by_twine.name]
    assert twine_row["project"] == "api-demo" and twine_row["version"] == "1.0"
    assert twine_row["size"] == by_twine.stat().st_size
    assert twine_row["sha256"] == hashlib.sha256(by_twine.read_bytes()).hexdigest()
    assert twine_row["state"] == "live"
    assert twine_row["uploaded_by"] == publisher.username and twine_row["token"] == "ci-publish"
    assert twine_row["uploaded_at"]
    assert rows[by_page.name]["uploaded_by"] == publisher.username and rows[by_page.name]["token"] is None
    table = as_table.getvalue()
    assert by_twine.name in table and by_page.name in table and "ci-publish" in table
    with pytest.raises(CommandError, match="No index named or numbered 'no-such-index'"):
        call_command("list_packages", "no-such-index")


def test_the_index_page_shows_the_upload_url_with_a_copy_button(ready_index, lead_client, settings) -> None:
    settings.PORTAL_BASE_URL = "https://portal.example.com"

    page = lead_client.get(reverse("index_detail", args=[ready_index.pk])).content.decode()

    url = f"https://portal.example.com/indexes/{ready_index.pk}/packages/legacy/"
    assert f'<code id="upload-url">{url}</code>' in page
    assert 'data-copy="#upload-url"' in page
