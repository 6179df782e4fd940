"""Each snippet works pasted where its label says, from another directory, by the real client:
the text is taken from the tokens page as a user copies it (one block per copy button) and run
with a sandboxed HOME, so nothing but the snippets configures pip, uv, Poetry and twine."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.builders import build_wheel
from tests.test_packages_e2e import upload

pytestmark = [pytest.mark.django_db, pytest.mark.e2e]

# What the machine sets and a user's shell would not: any of these would configure the clients.
_MACHINE_ONLY = ("PIP_", "UV_", "POETRY_", "TWINE_", "XDG_", "VIRTUAL_ENV")
_MACHINE_ONLY_NAMES = {"REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "PYTHONPATH"}
UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")


def copied_blocks(page: str) -> dict[str, str]:
    """Every block with a copy button, by its id, as the clipboard would receive it."""
    return {
        block_id: html.unescape(text)
        for block_id, text in re.findall(r'<pre id="(snippet-[\w-]+)">(.*?)</pre>', page, flags=re.S)
    }


def user_env(home: Path, *bin_dirs: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_MACHINE_ONLY) and k not in _MACHINE_ONLY_NAMES}
    env["HOME"] = str(home)
    env["PATH"] = os.pathsep.join([*map(str, bin_dirs), env.get("PATH", "")])
    return env


def shell(script: str, *, cwd: Path, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euc", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def poetry_bin(tmp_path_factory) -> Path:
    """Poetry in its own virtualenv (it is not a project requirement); skipped if not installable."""
    target = tmp_path_factory.mktemp("poetry")
    venv.create(target, with_pip=False)  # this pip installs into it: faster than ensurepip
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "install", "--quiet",
         "--disable-pip-version-check", "poetry"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if installed.returncode != 0:
        pytest.skip(f"Poetry could not be installed here: {installed.stderr[-300:]}")
    return target / "bin"


@pytest.fixture
def published(ready_index, publisher_client, tmp_path, run_jobs, django_capture_on_commit_callbacks):
    """The ready index serving snip-demo 1.0 (uploaded through the portal and made live)."""
    wheel = build_wheel(tmp_path, "snip-demo", "1.0")
    with django_capture_on_commit_callbacks(execute=True):
        assert upload(publisher_client, ready_index, wheel).status_code == 201
    run_jobs("packages")
    return ready_index


@pytest.fixture(scope="session")
def user_venv(tmp_path_factory) -> Path:
    """The user's own Python with pip (one per session: ensurepip is slow)."""
    target = tmp_path_factory.mktemp("user-venv")
    venv.create(target, with_pip=True)
    return target


@pytest.fixture
def sandbox(tmp_path, user_venv) -> dict[str, Path]:
    paths = {"home": tmp_path / "home", "elsewhere": tmp_path / "elsewhere", "venv": user_venv}
    paths["home"].mkdir()
    paths["elsewhere"].mkdir()
    return paths


def token_page(client, index, kind: str) -> str:
    response = client.post(f"/indexes/{index.pk}/packages/tokens/", {"label": f"snippets-{kind}", "kind": kind})
    assert response.status_code == 200
    return response.content.decode()


def test_ca_and_pip_snippets_install_from_another_directory(published, member_client, sandbox):
    blocks = copied_blocks(token_page(member_client, published, "read"))
    env = user_env(sandbox["home"], sandbox["venv"] / "bin")

    for block_id in ("snippet-ca-1", "snippet-pip-1"):
        ran = shell(blocks[block_id], cwd=sandbox["elsewhere"], env=env)
        assert ran.returncode == 0, ran.stderr
    pip_conf = (sandbox["home"] / ".config" / "pip" / "pip.conf").read_text()
    ca_line = next(line for line in pip_conf.splitlines() if line.startswith("cert"))
    ca_file = Path(ca_line.split("=", 1)[1].strip())
    assert ca_file.is_absolute() and ca_file.is_file()
    assert ca_file == sandbox["home"] / ".config" / "private-index" / f"{published.name}-ca.pem"

    installed = shell("python3 -m pip install --no-cache-dir --force-reinstall snip-demo==1.0",
                      cwd=sandbox["elsewhere"], env=env)  # fmt: skip

    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "localhost" in installed.stdout  # from the private index, not PyPI


def test_windows_pip_ini_names_an_absolute_ca_path_written_by_the_powershell_block(published, member_client):
    # No Windows here: the text is checked, the commands are not run.
    blocks = copied_blocks(token_page(member_client, published, "read"))

    ca = rf"C:\ProgramData\pip\{published.name}-ca.pem"
    assert f"cert = {ca}" in blocks["snippet-pip-ini-1"]
    assert f"Set-Content -Encoding ascii {ca}" in blocks["snippet-ca-2"]


@pytest.mark.skipif(UV is None, reason="uv is not installed")
def test_uv_snippet_adds_a_package_from_the_index_in_a_project(published, member_client, sandbox):
    blocks = copied_blocks(token_page(member_client, published, "read"))
    env = user_env(sandbox["home"], sandbox["venv"] / "bin", Path(UV).parent)
    env.update(UV_PYTHON=str(sandbox["venv"] / "bin" / "python"), UV_PYTHON_DOWNLOADS="never")
    project = sandbox["elsewhere"] / "app"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "app"\nversion = "0.1"\nrequires-python = ">=3.11"\ndependencies = []\n\n'
        + blocks["snippet-uv-1"]
    )
    assert shell(blocks["snippet-ca-1"], cwd=sandbox["elsewhere"], env=env).returncode == 0

    added = shell(blocks["snippet-uv-2"] + "uv add snip-demo==1.0\n", cwd=project, env=env)

    assert added.returncode == 0, added.stdout + added.stderr
    assert "snip-demo" in (project / "uv.lock").read_text()
    assert f"localhost:{published.deployment['https_port']}" in (project / "uv.lock").read_text()


def test_poetry_snippet_adds_a_package_from_the_index_in_a_project(published, member_client, sandbox, poetry_bin):
    blocks = copied_blocks(token_page(member_client, published, "read"))
    env = user_env(sandbox["home"], sandbox["venv"] / "bin", poetry_bin)
    env["POETRY_VIRTUALENVS_IN_PROJECT"] = "true"
    project = sandbox["elsewhere"] / "app"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "app"\nversion = "0.1"\nrequires-python = ">=3.11"\ndependencies = []\n\n'
        "[tool.poetry]\npackage-mode = false\n"
    )
    assert shell(blocks["snippet-ca-1"], cwd=sandbox["elsewhere"], env=env).returncode == 0
    configured = shell(blocks["snippet-poetry-1"], cwd=project, env=env)
    assert configured.returncode == 0, configured.stdout + configured.stderr

    added = shell("poetry add snip-demo==1.0", cwd=project, env=env, timeout=300)

    assert added.returncode == 0, added.stdout + added.stderr
    assert (project / ".venv" / "lib").exists()
    assert 'name = "snip-demo"' in (project / "poetry.lock").read_text()


@pytest.mark.django_db(transaction=True)  # the live server sees the token only once committed
def test_publish_snippets_upload_through_the_portal_as_pasted(
    published, publisher_client, sandbox, live_server, settings, tmp_path
):
    """The .pypirc and `twine upload -r private dist/*`, and `uv publish`, pasted as written and
    run from another directory, publish through the portal's upload URL (a live server)."""
    settings.PORTAL_BASE_URL = live_server.url
    blocks = copied_blocks(token_page(publisher_client, published, "publish"))
    upload_url = published.upload_url
    env = user_env(sandbox["home"], Path(sys.executable).parent)
    project = sandbox["elsewhere"]
    build_wheel(project / "dist", "snip-published", "1.0")

    (sandbox["home"] / ".pypirc").write_text(blocks["snippet-twine-1"])
    assert blocks["snippet-twine-2"] == "twine upload -r private dist/*\n"
    twine = shell("twine upload --non-interactive -r private dist/*", cwd=project, env=env)
    assert twine.returncode == 0, twine.stdout + twine.stderr
    assert published.package_files.filter(filename="snip_published-1.0-py3-none-any.whl").exists()

    (project / "dist" / "snip_published-1.0-py3-none-any.whl").unlink()
    build_wheel(project / "dist", "snip-published", "1.1")
    uv_block = blocks["snippet-uv-3"]
    assert f"uv publish --publish-url {upload_url} " in uv_block
    uv = shell(uv_block, cwd=project, env=env)
    assert uv.returncode == 0, uv.stdout + uv.stderr
    assert published.package_files.filter(filename="snip_published-1.1-py3-none-any.whl").exists()
    assert f"poetry config repositories.private {upload_url}\npoetry publish -r private\n" == blocks["snippet-poetry-2"]
    # Every block has its own copy button.
    page = token_page(publisher_client, published, "publish")
    assert len(re.findall(r'data-copy="#snippet-', page)) == len(copied_blocks(page)) >= 8
