"""The modern index protocol end to end, through the portal and a provisioned index (local
driver: the index server behind Caddy over HTTPS, the index CA trusted, no CA override or pip
setting from this machine): real pip and uv resolve from metadata files only, skip a release
yanked on the package page unless pinned and print its reason, honour Requires-Python; JSON and
HTML agree; `manage.py yank` and `manage.py backfill_metadata` change what the index serves."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
from django.core.management import call_command

from packages_ui import services
from packages_ui.models import PackageFile
from provisioning.drivers.backend import get_runtime, get_store
from provisioning.models import PrivateIndex
from provisioning.services import index_spec
from provisioning.spec import SHARE_PACKAGES
from tests.builders import build_wheel, metadata_text
from tests.test_packages_e2e import ca_file, child_env, create_token, index_session, upload

_ = ca_file  # a fixture, used by name

pytestmark = pytest.mark.e2e

JSON = "application/vnd.pypi.simple.v1+json"


def wheel(folder: Path, name: str, version: str, *, requires: str = "", requires_python: str = "") -> Path:
    """A real wheel whose METADATA carries Requires-Dist / Requires-Python when given."""
    text = metadata_text(name, version, requires_python or None).rstrip("\n") + "\n"
    if requires:
        text += f"Requires-Dist: {requires}\n"
    info = f"{name.replace('-', '_')}-{version}.dist-info/METADATA"
    return build_wheel(folder, name, version, extra_files={info: (text + "\n").encode()})


@dataclass
class Published:
    """An index holding modern-app 1.0 (needs modern-lib>=1), modern-lib 1.0, 2.0 (yanked on the
    package page: "corrupt build") and 3.0 (Requires-Python >=3.12), with a read token."""

    index: PrivateIndex
    auth: tuple[str, str]
    ca_file: Path
    tmp: Path

    @property
    def base(self) -> str:
        return index_spec(self.index).base_url

    @property
    def index_url(self) -> str:
        user, password = self.auth
        return f"https://{user}:{password}@localhost:{self.index.deployment['https_port']}/simple/"

    @property
    def log_path(self) -> Path:
        # The local driver writes each process's output under the index's folder.
        return get_runtime().index_dir(self.index.pk, self.index.name) / "logs" / "pypiserver.log"

    def log_mark(self) -> int:
        return self.log_path.stat().st_size

    def requests_since(self, mark: int) -> list[str]:
        """The paths of the GET requests the index server logged after `mark`."""
        text = self.log_path.read_bytes()[mark:].decode(errors="replace")
        return re.findall(r'"GET (\S+)" 200 ', text)

    def project(self, project: str, accept: str = JSON) -> requests.Response:
        with index_session(self.ca_file) as session:
            response = session.get(f"{self.base}/simple/{project}/", auth=self.auth, headers={"Accept": accept})
        response.raise_for_status()
        return response

    def files(self, project: str) -> dict[str, dict]:
        return {f["filename"]: f for f in self.project(project).json()["files"]}

    def wait_until_served(self, project: str, filename: str, key: str, expected, seconds: float = 5) -> None:
        """The index server re-reads a new manifest within a fraction of a second."""
        deadline = time.monotonic() + seconds
        while self.files(project)[filename][key] != expected:
            assert time.monotonic() < deadline, f"{filename}: {key} is not {expected!r}"
            time.sleep(0.05)


def pip(*args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "pip", *args, "--no-cache-dir", "--no-input"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, env=child_env())


def uv(published: Published, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in child_env().items() if not k.startswith("UV_")}
    # uv trusts the index CA from SSL_CERT_FILE (child_env removed the machine's own).
    env.update(SSL_CERT_FILE=str(published.ca_file), UV_NO_CONFIG="1")
    argv = [str(Path(sys.executable).with_name("uv")), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env)


def pip_resolve(published: Published, requirement: str, python: str = "3.11") -> tuple[dict[str, str], str]:
    """`pip install --dry-run --report`: (name → version, pip's output)."""
    report = published.tmp / "report.json"
    result = pip(
        "install", "--dry-run", "--ignore-installed", "--report", str(report), "--python-version", python,
        "--only-binary=:all:", "--index-url", published.index_url, "--cert", str(published.ca_file), requirement,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    installs = json.loads(report.read_text())["install"]
    return {i["metadata"]["name"]: i["metadata"]["version"] for i in installs}, result.stdout + result.stderr


def uv_compile(published: Published, requirement: str, python: str = "3.11") -> tuple[list[str], str]:
    """`uv pip compile`: (the pinned lines, uv's warnings)."""
    requirements = published.tmp / "requirements.in"
    requirements.write_text(requirement + "\n")
    result = uv(
        published, "pip", "compile", "--no-cache", "--no-header", "--python-version", python,
        "--index-url", published.index_url, str(requirements),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return re.findall(r"^([a-z-]+==[\w.]+)", result.stdout, re.M), result.stderr


def wheel_gets(paths: list[str]) -> list[str]:
    return [p for p in paths if p.endswith(".whl")]


@pytest.fixture
def published(
    ready_index, publisher_client, tmp_path, ca_file, run_jobs, django_capture_on_commit_callbacks
) -> Published:
    dist = tmp_path / "dist"
    files = [
        wheel(dist, "modern-app", "1.0", requires="modern-lib>=1"),
        wheel(dist, "modern-lib", "1.0", requires_python=">=3.8"),
        wheel(dist, "modern-lib", "2.0"),
        wheel(dist, "modern-lib", "3.0", requires_python=">=3.12"),
    ]
    for path in files:
        with django_capture_on_commit_callbacks(execute=True):
            assert upload(publisher_client, ready_index, path).status_code == 201
    assert run_jobs("packages") == 1
    with django_capture_on_commit_callbacks(execute=True):
        yanked = publisher_client.post(
            f"/indexes/{ready_index.pk}/packages/yank/",
            {"project": "modern-lib", "version": "2.0", "reason": "corrupt build"},
        )
    assert yanked.status_code == 302
    run_jobs("packages")
    result = Published(ready_index, create_token(publisher_client, ready_index, "read", "laptop"), ca_file, tmp_path)
    result.wait_until_served("modern-lib", "modern_lib-2.0-py3-none-any.whl", "yanked", "corrupt build")
    return result


def test_pip_resolves_from_metadata_files_only_and_skips_the_yanked_release_unless_pinned(published):
    mark = published.log_mark()
    resolved, _ = pip_resolve(published, "modern-app")
    resolve_requests = published.requests_since(mark)

    mark = published.log_mark()
    pinned, output = pip_resolve(published, "modern-lib==2.0")

    # On 3.11, 3.0 is out (Requires-Python) and 2.0 is yanked: 1.0 it is.
    assert resolved == {"modern-app": "1.0", "modern-lib": "1.0"}
    assert "/packages/modern_lib-1.0-py3-none-any.whl.metadata" in resolve_requests
    assert wheel_gets(resolve_requests) == []
    assert pinned == {"modern-lib": "2.0"}
    assert "yanked" in output and "corrupt build" in output
    assert wheel_gets(published.requests_since(mark)) == []


def test_uv_resolves_from_metadata_files_only_skips_the_yanked_release_and_honours_requires_python(published):
    mark = published.log_mark()
    resolved, _ = uv_compile(published, "modern-app")
    pinned, warnings = uv_compile(published, "modern-lib==2.0")
    newest, _ = uv_compile(published, "modern-lib", python="3.12")

    assert resolved == ["modern-app==1.0", "modern-lib==1.0"]
    assert pinned == ["modern-lib==2.0"] and "corrupt build" in warnings
    assert newest == ["modern-lib==3.0"]
    paths = published.requests_since(mark)
    assert "/packages/modern_lib-1.0-py3-none-any.whl.metadata" in paths
    assert wheel_gets(paths) == []


def test_pip_installing_for_a_too_old_python_picks_the_older_release(published):
    target = published.tmp / "target"
    result = pip(
        "install", "--python-version", "3.8", "--only-binary=:all:", "--target", str(target),
        "--index-url", published.index_url, "--cert", str(published.ca_file), "modern-lib",
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert (target / "modern_lib" / "__init__.py").read_text() == 'VERSION = "1.0"\n'


def test_json_and_html_agree_file_for_file_and_metadata_files_match_their_announced_hash(published):
    html = published.project("modern-lib", accept="text/html").text
    links = {name: tag for tag, name in re.findall(r"(<a [^>]*>)([^<]+)</a>", html)}
    files = published.files("modern-lib")
    rows = {p.filename: p for p in PackageFile.objects.filter(project="modern-lib")}

    assert set(links) == set(files) == set(rows)
    with index_session(published.ca_file) as session:
        for filename, entry in files.items():
            tag = links[filename]
            assert f'#sha256={entry["hashes"]["sha256"]}"' in tag
            assert f'data-core-metadata="sha256={entry["core-metadata"]["sha256"]}"' in tag
            assert ("data-yanked" in tag) == (entry["yanked"] is not False)
            assert ("data-requires-python" in tag) == ("requires-python" in entry)
            url = urljoin(f"{published.base}/simple/modern-lib/", entry["url"]) + ".metadata"
            metadata = session.get(url, auth=published.auth)
            assert metadata.status_code == 200
            assert hashlib.sha256(metadata.content).hexdigest() == entry["core-metadata"]["sha256"]
            assert entry["core-metadata"]["sha256"] == rows[filename].metadata_sha256
    assert 'data-yanked="corrupt build"' in links["modern_lib-2.0-py3-none-any.whl"]
    assert 'data-requires-python="&gt;=3.12"' in links["modern_lib-3.0-py3-none-any.whl"]
    assert files["modern_lib-3.0-py3-none-any.whl"]["requires-python"] == ">=3.12"


def test_the_yank_command_yanks_and_un_yanks_what_pip_sees(published, run_jobs, django_capture_on_commit_callbacks):
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("yank", published.index.name, "modern-lib", "1.0", "--reason", "use 3.0", "--json", stdout=out)
    run_jobs("packages")
    published.wait_until_served("modern-lib", "modern_lib-1.0-py3-none-any.whl", "yanked", "use 3.0")

    # Every release a 3.11 can use is yanked now: pip says so and takes none (its rule for a
    # range, PEP 592: a yanked release is chosen only when pinned exactly).
    report = published.tmp / "r.json"
    refused = pip(
        "install", "--dry-run", "--ignore-installed", "--report", str(report), "--python-version", "3.11",
        "--only-binary=:all:", "--index-url", published.index_url, "--cert", str(published.ca_file), "modern-lib",
    )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        call_command("yank", str(published.index.pk), "modern-lib", "1.0", "--undo", stdout=StringIO())
    run_jobs("packages")
    published.wait_until_served("modern-lib", "modern_lib-1.0-py3-none-any.whl", "yanked", False)

    assert json.loads(out.getvalue())["files"] == ["modern_lib-1.0-py3-none-any.whl"]
    assert refused.returncode != 0, refused.stdout
    assert pip_resolve(published, "modern-lib")[0] == {"modern-lib": "1.0"}


def test_backfill_gives_wheels_without_metadata_files_their_metadata_and_pip_resolves_without_wheels_again(
    published, run_jobs, django_capture_on_commit_callbacks
):
    index, store = published.index, get_store()
    for package in PackageFile.objects.filter(index=index):
        store.delete_file(index_spec(index), SHARE_PACKAGES, services.metadata_path(package.filename))
    PackageFile.objects.filter(index=index).update(metadata_sha256="", requires_python="")
    services.refresh_manifest(index)
    published.wait_until_served("modern-lib", "modern_lib-1.0-py3-none-any.whl", "core-metadata", False)
    mark = published.log_mark()
    pip_resolve(published, "modern-app")
    old_way = wheel_gets(published.requests_since(mark))

    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("backfill_metadata", index.name, "--json", stdout=out)
    run_jobs("packages")
    expected = PackageFile.objects.get(filename="modern_lib-1.0-py3-none-any.whl").metadata_sha256
    published.wait_until_served("modern-lib", "modern_lib-1.0-py3-none-any.whl", "core-metadata", {"sha256": expected})
    mark = published.log_mark()
    resolved, _ = pip_resolve(published, "modern-app")

    assert old_way  # without metadata files pip downloads wheels to read their METADATA
    assert json.loads(out.getvalue())[0]["written"] == 4
    assert resolved == {"modern-app": "1.0", "modern-lib": "1.0"}
    assert wheel_gets(published.requests_since(mark)) == []
    assert published.files("modern-lib")["modern_lib-3.0-py3-none-any.whl"]["requires-python"] == ">=3.12"
    again = StringIO()
    call_command("backfill_metadata", index.name, "--json", stdout=again)
    assert json.loads(again.getvalue())[0]["written"] == 0
