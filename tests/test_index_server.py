"""The index server each index runs (provisioning/index_server.py), started as the real process it
is in the container: pypiserver on waitress serving the portal's manifest, read-only, with tokens
from tokens.json; real pip, uv and twine against it."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from passlib.hash import sha256_crypt

from provisioning.index_server import HMAC_SCHEME, IndexState, PageCache, hash_token, negotiate, verify_token
from tests.builders import build_wheel, metadata_text
from tests.clients import clean_env
from tests.index_server_support import (
    SERVER,
    UPLOAD_URL,
    IndexServer,
    manifest_entry,
    write_json_atomically,
)

# As the portal hashed tokens for htpasswd before the HMAC format.
LEGACY = sha256_crypt.using(rounds=5000)
ALICE = ("alice", "a" * 40)
BOB = ("bob", "b" * 40)
JSON = "application/vnd.pypi.simple.v1+json"
PIP_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"


def _wheel(folder: Path, name: str, version: str, *, requires: str = "", requires_python: str = "") -> Path:
    """A real wheel whose METADATA carries Requires-Dist / Requires-Python when given."""
    extra = ""
    if requires_python:
        extra += f"Requires-Python: {requires_python}\n"
    if requires:
        extra += f"Requires-Dist: {requires}\n"
    metadata = metadata_text(name, version).rstrip("\n") + "\n" + extra + "\n"
    info = f"{name.replace('-', '_')}-{version}.dist-info/METADATA"
    return build_wheel(folder, name, version, extra_files={info: metadata.encode()})


@pytest.fixture
def server(tmp_path: Path) -> Iterator[IndexServer]:
    """A running index server holding demo-pkg 1.0 and 2.0, with tokens for alice and bob."""
    index = IndexServer(tmp_path / "index")
    index.packages.mkdir(parents=True)
    files = [
        manifest_entry(build_wheel(index.packages, "demo-pkg", "1.0"), "demo-pkg", "1.0"),
        manifest_entry(build_wheel(index.packages, "demo-pkg", "2.0"), "demo-pkg", "2.0"),
    ]
    index.write_manifest(files)
    index.write_tokens(dict([ALICE, BOB]))
    index.start()
    yield index
    index.stop()


def _links(html: str) -> dict[str, str]:
    """file name → the whole <a ...> tag, from a project page."""
    return {m.group(2): m.group(1) for m in re.finditer(r"(<a [^>]*>)([^<]+)</a>", html)}


def _wait_until(predicate, seconds: float) -> float:
    """Polls every 20 ms; returns the seconds it took, or fails after `seconds`."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < seconds, "condition not met in time"
        time.sleep(0.02)
    return time.monotonic() - started


def _client_env() -> dict[str, str]:
    """No CA overrides and no pip configuration of this machine (its pip.conf adds find-links and
    extra indexes): pip and uv see only the index under test."""
    env = {k: v for k, v in clean_env().items() if not k.startswith(("PIP_", "UV_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, UV_NO_CONFIG="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def _pip(*args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "pip", *args, "--no-cache-dir"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, env=_client_env())


def _uv(*args: str) -> subprocess.CompletedProcess:
    uv = Path(sys.executable).with_name("uv")
    return subprocess.run([str(uv), *args], capture_output=True, text=True, timeout=180, env=_client_env())


def _wheel_gets(log: str) -> list[str]:
    return [line for line in log.splitlines() if re.search(r'"GET /packages/[^" ]+\.whl"', line)]


# --- tokens (no process) --------------------------------------------------------------------------


def test_hash_token_salts_each_hash_and_verifies_only_the_right_password():
    first, second = hash_token("x" * 40), hash_token("x" * 40)
    assert first != second and first.startswith(HMAC_SCHEME + "$")
    assert verify_token(first, "x" * 40) and verify_token(second, "x" * 40)
    assert not verify_token(first, "y" * 40)
    assert not verify_token("hmac-sha256$zz$00", "x" * 40)
    assert not verify_token("plain-text", "plain-text")


def test_verify_token_accepts_legacy_sha256_crypt_hashes():
    legacy = LEGACY.hash("x" * 40)
    assert verify_token(legacy, "x" * 40)
    assert not verify_token(legacy, "y" * 40)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "text/html"),
        ("*/*", "text/html"),
        (PIP_ACCEPT, JSON),
        ("application/vnd.pypi.simple.v1+html", "application/vnd.pypi.simple.v1+html"),
        ("text/html, application/vnd.pypi.simple.v1+json", "text/html"),
        ("text/html;q=0.5, application/vnd.pypi.simple.v1+json;q=0.9", JSON),
        ("application/vnd.pypi.simple.latest+json", JSON),
        ("application/vnd.pypi.simple.v1+json;q=0, text/html;q=0.1", "text/html"),
        ("application/json", "text/html"),
    ],
)
def test_negotiate_picks_the_highest_quality_type_the_index_serves(accept, expected):
    assert negotiate(accept) == expected


def test_the_page_cache_renders_a_page_once_per_manifest_version_and_stays_within_its_bounds(tmp_path):
    state = IndexState(manifest=tmp_path / "manifest.json", tokens=tmp_path / "tokens.json", packages=tmp_path)
    write_json_atomically(tmp_path / "manifest.json", {"version": 1, "generation": "1", "files": []})
    rendered: list[str] = []

    def pages(environ, start_response):  # stands in for pypiserver: a 100-byte page per path
        rendered.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "text/html")])
        return [environ["PATH_INFO"].encode().ljust(100)]

    cache = PageCache(pages, state, max_entries=3, max_bytes=800)

    def get(path: str, accept: str = "text/html") -> bytes:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "HTTP_ACCEPT": accept, "HTTP_HOST": "h"}
        return b"".join(cache(environ, lambda status, headers: None))

    assert get("/simple/a/") == get("/simple/a/") == b"/simple/a/".ljust(100)
    get("/simple/a/", JSON)
    assert rendered == ["/simple/a/", "/simple/a/"]  # one per negotiated type
    for name in "bcd":
        get(f"/simple/{name}/")
    get("/simple/a/")
    assert rendered[-1] == "/simple/a/"  # pushed out: at most 3 entries
    assert cache._bytes <= 800
    time.sleep(0.3)
    write_json_atomically(tmp_path / "manifest.json", {"version": 1, "generation": "2", "files": []})
    count = len(rendered)
    get("/simple/d/")
    assert len(rendered) == count + 1  # a new manifest: rendered again
    get("/packages/")
    get("/packages/")
    assert rendered[-2:] == ["/packages/", "/packages/"]  # only /simple/ pages are cached


def test_the_module_imports_only_what_the_stock_pypiserver_image_has_and_parses_as_python_3_10():
    tree = ast.parse(SERVER.read_text(), feature_version=(3, 10))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    allowed = set(sys.stdlib_module_names) | {"__future__", "pypiserver", "waitress", "passlib"}
    assert imported - allowed == set()
    assert {"pypiserver", "waitress"} <= imported


# --- auth -----------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_requests_without_or_with_wrong_credentials_get_401_with_a_basic_challenge(server):
    for auth in (None, ("alice", "wrong"), ("mallory", ALICE[1]), ("", "")):
        for path in ("/simple/", "/simple/demo-pkg/", "/packages/demo_pkg-1.0-py3-none-any.whl", "/"):
            reply = server.request("GET", path, auth=auth)
            assert reply.status == 401, (auth, path)
            assert reply.header("WWW-Authenticate") == 'Basic realm="pypi"'
    garbled = server.request("GET", "/simple/", headers={"Authorization": "Basic !!!not-base64"})
    assert garbled.status == 401
    health = server.request("GET", "/health")
    assert (health.status, health.body) == (200, b"Ok")
    assert ALICE[1] not in server.access_log()


@pytest.mark.e2e
def test_a_token_reads_the_index_and_downloads_a_file_whose_hash_matches_its_link(server):
    index = server.request("GET", "/simple/", auth=ALICE)
    assert index.status == 200
    assert '<a href="demo-pkg/">demo-pkg</a>' in index.body.decode()
    page = server.request("GET", "/simple/demo-pkg/", auth=BOB)
    tag = _links(page.body.decode())["demo_pkg-2.0-py3-none-any.whl"]
    href = re.search(r'href="([^"]+)"', tag).group(1)
    path, fragment = href.split("#")
    assert path == "/packages/demo_pkg-2.0-py3-none-any.whl"
    download = server.request("GET", path, auth=ALICE)
    assert download.status == 200
    assert fragment == "sha256=" + hashlib.sha256(download.body).hexdigest()
    line = f'127.0.0.1 alice "GET /packages/demo_pkg-2.0-py3-none-any.whl" 200 {len(download.body)} '
    assert line in server.access_log(containing=line)


@pytest.mark.e2e
def test_a_legacy_sha256_crypt_token_still_reads(server):
    write_json_atomically(server.tokens_path, {"version": 1, "tokens": {"old": LEGACY.hash("p" * 40)}})
    _wait_until(lambda: server.request("GET", "/simple/", auth=("old", "p" * 40)).status == 200, 1.5)
    assert server.request("GET", "/simple/", auth=("old", "q" * 40)).status == 401


# --- what is served -------------------------------------------------------------------------------


@pytest.mark.e2e
def test_a_foreign_file_on_the_share_is_neither_listed_nor_downloadable(server):
    foreign = build_wheel(server.packages, "demo-pkg", "3.0")
    other = build_wheel(server.packages, "intruder", "1.0")
    time.sleep(0.3)  # past the reload interval: the folder change has been seen
    page = server.request("GET", "/simple/demo-pkg/", auth=ALICE).body.decode()
    assert foreign.name not in page
    assert "intruder" not in server.request("GET", "/simple/", auth=ALICE).body.decode()
    assert server.request("GET", "/simple/intruder/", auth=ALICE).status == 404
    assert "intruder" not in server.request("GET", "/packages/", auth=ALICE).body.decode()
    for name in (foreign.name, other.name):
        assert server.request("GET", f"/packages/{name}", auth=ALICE).status == 404


@pytest.mark.e2e
def test_a_listed_file_missing_on_disk_or_of_another_size_is_not_served(server):
    manifest = json.loads(server.manifest_path.read_text())
    missing = manifest_entry(build_wheel(server.packages, "demo-pkg", "4.0"), "demo-pkg", "4.0")
    (server.packages / missing["filename"]).unlink()
    swapped = manifest_entry(build_wheel(server.packages, "demo-pkg", "5.0"), "demo-pkg", "5.0")
    (server.packages / swapped["filename"]).write_bytes(b"something else")
    server.write_manifest([*manifest["files"], missing, swapped], generation="2")
    time.sleep(0.3)
    page = server.request("GET", "/simple/demo-pkg/", auth=ALICE).body.decode()
    assert "demo_pkg-2.0-py3-none-any.whl" in page
    assert missing["filename"] not in page and swapped["filename"] not in page
    assert server.request("GET", f"/packages/{swapped['filename']}", auth=ALICE).status == 404


@pytest.mark.e2e
def test_a_manifest_change_is_served_within_a_second_while_a_reader_sees_no_error(server):
    errors: list[str] = []
    reads = 0
    stop = threading.Event()

    def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            try:
                reply = server.request("GET", "/simple/demo-pkg/", auth=ALICE)
                if reply.status != 200:
                    errors.append(str(reply.status))
            except OSError as exc:
                errors.append(repr(exc))
            reads += 1
            time.sleep(0.02)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        time.sleep(0.5)
        manifest = json.loads(server.manifest_path.read_text())
        new = manifest_entry(build_wheel(server.packages, "demo-pkg", "3.0"), "demo-pkg", "3.0")
        server.write_manifest([*manifest["files"], new], generation="2")
        took = _wait_until(
            lambda: new["filename"] in server.request("GET", "/simple/demo-pkg/", auth=ALICE).body.decode(), 3
        )
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert took < 1.0
    assert reads > 20 and errors == []
    assert server.process.poll() is None  # no restart: the same process


@pytest.mark.e2e
def test_a_broken_manifest_keeps_the_last_good_one_until_a_good_one_arrives(server):
    server.manifest_path.write_text('{"version": 1, "files": [{"filename": "demo_pkg-9')  # half written
    time.sleep(0.4)
    assert "demo_pkg-2.0-py3-none-any.whl" in server.request("GET", "/simple/demo-pkg/", auth=ALICE).body.decode()
    assert "Could not load the manifest" in server.stderr()
    server.write_manifest([], generation="empty")
    _wait_until(lambda: server.request("GET", "/simple/demo-pkg/", auth=ALICE).status == 404, 1.5)


@pytest.mark.e2e
def test_a_server_started_before_its_files_exist_serves_them_once_written(tmp_path):
    index = IndexServer(tmp_path / "late")
    index.start()
    try:
        assert index.request("GET", "/simple/", auth=ALICE).status == 401
        index.write_tokens(dict([ALICE]))
        entry = manifest_entry(build_wheel(index.packages, "demo-pkg", "1.0"), "demo-pkg", "1.0")
        index.write_manifest([entry])
        took = _wait_until(lambda: index.request("GET", "/simple/demo-pkg/", auth=ALICE).status == 200, 3)
        assert took < 1.0
    finally:
        index.stop()


@pytest.mark.e2e
def test_a_revoked_token_gets_401_within_a_second(server):
    assert server.request("GET", "/simple/", auth=ALICE).status == 200
    server.write_tokens(dict([BOB]))
    took = _wait_until(lambda: server.request("GET", "/simple/", auth=ALICE).status == 401, 3)
    assert took < 1.0
    assert server.request("GET", "/simple/", auth=BOB).status == 200


# --- the index accepts no writes; redirects ---------------------------------------------------------


@pytest.mark.e2e
def test_writes_are_refused_with_405_naming_the_upload_url(server):
    for method, path in (("POST", "/"), ("PUT", "/packages/x.whl"), ("DELETE", "/simple/demo-pkg/")):
        reply = server.request(method, path, auth=ALICE, body=b":action=remove_pkg&name=demo-pkg&version=1.0")
        assert reply.status == 405
        assert reply.header("Allow") == "GET, HEAD"
        assert f"twine upload --repository-url {UPLOAD_URL} dist/*" in reply.body.decode()
    assert server.request("POST", "/", auth=("alice", "wrong")).status == 401
    assert "demo_pkg-1.0" in server.request("GET", "/simple/demo-pkg/", auth=ALICE).body.decode()


@pytest.mark.e2e
def test_twine_upload_to_the_index_shows_the_upload_url(server, tmp_path):
    wheel = build_wheel(tmp_path, "demo-pkg", "9.0")
    argv = [sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
            "--repository-url", f"{server.base_url}/", "-u", ALICE[0], "-p", ALICE[1], str(wheel)]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=_client_env())
    assert result.returncode != 0
    assert UPLOAD_URL in result.stdout + result.stderr
    assert not (server.packages / wheel.name).exists()


@pytest.mark.e2e
def test_root_redirects_to_simple_and_the_welcome_page_is_gone(server):
    reply = server.request("GET", "/", auth=ALICE)
    assert reply.status == 303
    assert reply.header("Location") == f"{server.base_url}/simple/"
    assert b"pypiserver" not in server.request("GET", "/", auth=None).body


@pytest.mark.e2e
def test_normalization_redirects_stay_on_https_behind_the_proxy_only(server):
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "idx.example:8443"}
    reply = server.request("GET", "/simple/Demo_Pkg/", auth=ALICE, headers=forwarded)
    assert reply.status == 301
    assert reply.header("Location") == "https://idx.example:8443/simple/demo-pkg/"
    slash = server.request("GET", "/simple/Demo_Pkg", auth=ALICE, headers=forwarded)
    assert slash.header("Location") == "https://idx.example:8443/simple/Demo_Pkg/"
    # From another address than the proxy's loopback one, the forwarded headers are ignored.
    direct = server.request("GET", "/simple/Demo_Pkg/", auth=ALICE, headers=forwarded, source="127.0.0.2")
    assert direct.header("Location") == f"{server.base_url}/simple/demo-pkg/"


@pytest.mark.e2e
def test_the_access_log_shows_the_client_address_the_proxy_forwards(server):
    headers = {"X-Forwarded-For": "203.0.113.9"}
    assert server.request("GET", "/simple/", auth=ALICE, headers=headers).status == 200
    assert server.request("GET", "/simple/", auth=BOB, headers=headers, source="127.0.0.2").status == 200
    log = server.access_log(containing="bob")
    assert '203.0.113.9 alice "GET /simple/" 200' in log
    assert '127.0.0.2 bob "GET /simple/" 200' in log


# --- the modern protocol (PEP 691, 700, 592, 658/714, Requires-Python) ----------------------------------


@pytest.fixture
def rich_server(server) -> IndexServer:
    """demo-pkg 1.0 (Requires-Python >=3.8), 2.0 yanked with a reason, 2.1 yanked without one,
    and an sdist without metadata."""
    p = server.packages
    files = [
        manifest_entry(
            _wheel(p, "demo-pkg", "1.0", requires_python=">=3.8"), "demo-pkg", "1.0", requires_python=">=3.8"
        ),
        manifest_entry(build_wheel(p, "demo-pkg", "2.0"), "demo-pkg", "2.0", yanked="broken <build> & more"),
        manifest_entry(build_wheel(p, "demo-pkg", "2.1"), "demo-pkg", "2.1", yanked=True),
    ]
    sdist = p / "demo_pkg-2.1.tar.gz"
    sdist.write_bytes(b"not inspected by the server")
    files.append(manifest_entry(sdist, "demo-pkg", "2.1"))
    server.write_manifest(files, generation="rich")
    _wait_until(lambda: b"2.1.tar.gz" in server.request("GET", "/simple/demo-pkg/", auth=ALICE).body, 1.5)
    return server


@pytest.mark.e2e
def test_json_and_html_list_the_same_files_with_the_same_attributes(rich_server):
    html_reply = rich_server.request("GET", "/simple/demo-pkg/", auth=ALICE)
    json_reply = rich_server.request("GET", "/simple/demo-pkg/", auth=ALICE, headers={"Accept": PIP_ACCEPT})
    assert html_reply.header("Content-Type") == "text/html; charset=utf-8"
    assert json_reply.header("Content-Type") == JSON
    assert html_reply.header("Vary") == json_reply.header("Vary") == "Accept"
    links = _links(html_reply.body.decode())
    detail = json.loads(json_reply.body)
    assert detail["meta"] == {"api-version": "1.1"}
    assert detail["name"] == "demo-pkg"
    assert detail["versions"] == ["1.0", "2.0", "2.1"]
    assert [f["filename"] for f in detail["files"]] == list(links)
    for entry in detail["files"]:
        tag = links[entry["filename"]]
        assert f'href="{entry["url"]}#sha256={entry["hashes"]["sha256"]}"' in tag
        assert entry["size"] == (rich_server.packages / entry["filename"]).stat().st_size
        assert entry["upload-time"] == "2026-12-03T05:00:00.000000Z"
        metadata = entry["core-metadata"]
        assert entry["dist-info-metadata"] == metadata
        if metadata:
            assert f'data-core-metadata="sha256={metadata["sha256"]}"' in tag
            assert f'data-dist-info-metadata="sha256={metadata["sha256"]}"' in tag
        else:
            assert "data-core-metadata" not in tag and "data-dist-info-metadata" not in tag
    index = rich_server.request("GET", "/simple/", auth=ALICE, headers={"Accept": JSON})
    assert json.loads(index.body) == {"meta": {"api-version": "1.1"}, "projects": [{"name": "demo-pkg"}]}
    vnd_html = rich_server.request(
        "GET", "/simple/", auth=ALICE, headers={"Accept": "application/vnd.pypi.simple.v1+html"}
    )
    assert vnd_html.header("Content-Type").startswith("application/vnd.pypi.simple.v1+html")


@pytest.mark.e2e
def test_yanked_and_requires_python_are_announced_escaped_in_html_and_json(rich_server):
    links = _links(rich_server.request("GET", "/simple/demo-pkg/", auth=ALICE).body.decode())
    assert 'data-requires-python="&gt;=3.8"' in links["demo_pkg-1.0-py3-none-any.whl"]
    assert "data-yanked" not in links["demo_pkg-1.0-py3-none-any.whl"]
    assert 'data-yanked="broken &lt;build&gt; &amp; more"' in links["demo_pkg-2.0-py3-none-any.whl"]
    assert 'data-yanked=""' in links["demo_pkg-2.1-py3-none-any.whl"]
    files = json.loads(rich_server.request("GET", "/simple/demo-pkg/", auth=ALICE, headers={"Accept": JSON}).body)
    by_name = {f["filename"]: f for f in files["files"]}
    assert by_name["demo_pkg-1.0-py3-none-any.whl"]["requires-python"] == ">=3.8"
    assert by_name["demo_pkg-1.0-py3-none-any.whl"]["yanked"] is False
    assert by_name["demo_pkg-2.0-py3-none-any.whl"]["yanked"] == "broken <build> & more"
    assert by_name["demo_pkg-2.1-py3-none-any.whl"]["yanked"] is True


@pytest.mark.e2e
def test_a_metadata_file_is_served_with_the_announced_hash_and_needs_a_token(rich_server):
    files = json.loads(rich_server.request("GET", "/simple/demo-pkg/", auth=ALICE, headers={"Accept": JSON}).body)
    wheel = next(f for f in files["files"] if f["filename"] == "demo_pkg-1.0-py3-none-any.whl")
    metadata = rich_server.request("GET", wheel["url"] + ".metadata", auth=ALICE)
    assert metadata.status == 200
    assert hashlib.sha256(metadata.body).hexdigest() == wheel["core-metadata"]["sha256"]
    assert b"Requires-Python: >=3.8" in metadata.body
    assert rich_server.request("GET", wheel["url"] + ".metadata", auth=None).status == 401
    assert rich_server.request("GET", "/packages/demo_pkg-2.1.tar.gz.metadata", auth=ALICE).status == 404


@pytest.fixture
def resolvable_server(server) -> IndexServer:
    """app 1.0 depends on lib>=1; lib 1.0, lib 2.0 (yanked: "corrupt build") and lib 3.0, which
    requires Python >=3.12; every wheel with its metadata file."""
    p = server.packages
    files = [
        manifest_entry(_wheel(p, "app", "1.0", requires="lib>=1"), "app", "1.0"),
        manifest_entry(_wheel(p, "lib", "1.0"), "lib", "1.0"),
        manifest_entry(_wheel(p, "lib", "2.0"), "lib", "2.0", yanked="corrupt build"),
        manifest_entry(_wheel(p, "lib", "3.0", requires_python=">=3.12"), "lib", "3.0", requires_python=">=3.12"),
    ]
    server.write_manifest(files, generation="resolve")
    _wait_until(lambda: server.request("GET", "/simple/lib/", auth=ALICE).status == 200, 1.5)
    return server


def _pip_dry_run(server: IndexServer, tmp_path: Path, requirement: str, python: str = "3.11"):
    """`pip install --dry-run --report` for a target Python; returns (name → version, pip's output)."""
    report = tmp_path / "report.json"
    result = _pip(
        "install", "--dry-run", "--ignore-installed", "--report", str(report), "--python-version", python,
        "--only-binary", ":all:", "--index-url", server.index_url(*ALICE), requirement,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    installs = json.loads(report.read_text())["install"]
    return {item["metadata"]["name"]: item["metadata"]["version"] for item in installs}, result.stdout + result.stderr


def _uv_compile(server: IndexServer, tmp_path: Path, requirement: str, python: str = "3.11") -> str:
    requirements = tmp_path / "requirements.in"
    requirements.write_text(requirement + "\n")
    result = _uv(
        "pip", "compile", "--no-cache", "--no-header", "--python-version", python,
        "--index-url", server.index_url(*ALICE), str(requirements),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


@pytest.mark.e2e
def test_pip_resolves_with_metadata_files_only_and_skips_a_yanked_version_unless_pinned(resolvable_server, tmp_path):
    # On 3.11 lib 3.0 is out (Requires-Python) and 2.0 is yanked: 1.0 it is.
    assert _pip_dry_run(resolvable_server, tmp_path, "app")[0] == {"app": "1.0", "lib": "1.0"}
    log = resolvable_server.access_log(containing="lib-1.0-py3-none-any.whl.metadata")
    assert '"GET /packages/lib-1.0-py3-none-any.whl.metadata" 200' in log
    assert _wheel_gets(log) == []
    pinned, output = _pip_dry_run(resolvable_server, tmp_path, "lib==2.0")
    assert pinned == {"lib": "2.0"}
    assert "corrupt build" in output  # pip's warning gives the yank reason
    assert _wheel_gets(resolvable_server.access_log(containing="lib-2.0-py3-none-any.whl.metadata")) == []


@pytest.mark.e2e
def test_pip_honours_requires_python(resolvable_server, tmp_path):
    assert _pip_dry_run(resolvable_server, tmp_path, "lib", python="3.11")[0] == {"lib": "1.0"}
    assert _pip_dry_run(resolvable_server, tmp_path, "lib", python="3.12")[0] == {"lib": "3.0"}


@pytest.mark.e2e
def test_pip_installs_the_resolved_wheels_from_the_index(resolvable_server, tmp_path):
    target = tmp_path / "target"
    result = _pip("install", "--target", str(target), "--index-url", resolvable_server.index_url(*ALICE), "app")
    assert result.returncode == 0, result.stderr
    assert (target / "lib" / "__init__.py").read_text() == 'VERSION = "1.0"\n'
    log = resolvable_server.access_log(containing='lib-1.0-py3-none-any.whl"')
    assert len(_wheel_gets(log)) == 2


@pytest.mark.e2e
def test_uv_resolves_with_metadata_files_only_skips_a_yanked_version_unless_pinned_and_honours_requires_python(
    resolvable_server, tmp_path
):
    assert re.findall(r"^([a-z]+==[\d.]+)", _uv_compile(resolvable_server, tmp_path, "app"), re.M) == [
        "app==1.0",
        "lib==1.0",
    ]
    assert re.search(r"^lib==2\.0$", _uv_compile(resolvable_server, tmp_path, "lib==2.0"), re.M)
    assert re.search(r"^lib==3\.0$", _uv_compile(resolvable_server, tmp_path, "lib", python="3.12"), re.M)
    log = resolvable_server.access_log(containing="lib-1.0-py3-none-any.whl.metadata")
    assert '"GET /packages/lib-1.0-py3-none-any.whl.metadata" 200' in log
    assert _wheel_gets(log) == []
