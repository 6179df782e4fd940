"""The index server: pypiserver, read-only, serving exactly the files the portal's manifest lists.

The portal writes this file's source to the index's config share and the container runs
`python /config/index/server.py --host 127.0.0.1 --port 8080 --manifest ... --tokens ... --packages ...`
on the stock pypiserver image (the local driver runs the same command with the venv's python).
So this module imports only the standard library, pypiserver (with its bundled bottle), waitress and,
when present, passlib; it must also run on the image's Python 3.10. The portal imports `hash_token`
and `verify_token` from it, so the token format has one definition.

What it adds to pypiserver's own app (which still answers every route it has):
- a Backend fed by manifest.json: a file is served only when it is listed there AND lies on disk
  with the listed size; digests come from the manifest, never from hashing files per request;
- tokens.json and manifest.json re-read when they change (no restart, no failed request);
- a WSGI front: HTTP Basic against tokens.json (401 + WWW-Authenticate, never 403), the index
  refuses writes (405 naming the portal's upload URL), a cache for the /simple/ pages, and one
  access-log line per request on stdout;
- PEP 691 JSON by content negotiation, PEP 700 fields, PEP 592 yanking, Requires-Python and
  PEP 658/714 metadata files.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import hashlib
import hmac
import html
import itertools
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import urljoin

import waitress
from pypiserver import app_from_config, setup_routes_from_config
from pypiserver._app import is_valid_pkg_filename, request_fullpath
from pypiserver.backend import Backend, BackendProxy
from pypiserver.bottle_wrapper import Bottle, HTTPError, redirect, request, response, static_file
from pypiserver.config import Config, RunConfig
from pypiserver.core import PkgFile
from pypiserver.pkg_helpers import normalize_pkgname, normalize_pkgname_for_url
from waitress.buffers import ReadOnlyFileBasedBuffer

try:  # Optional: only needed to accept sha256-crypt hashes written before the HMAC format.
    from passlib.hash import sha256_crypt
except ImportError:  # pragma: no cover - the venv and the stock image both have passlib
    sha256_crypt = None

log = logging.getLogger("index_server")
access_log = logging.getLogger("index_server.access")

T = TypeVar("T")
WSGIApp = Callable[[dict, Callable], Iterable[bytes]]

HEALTH_PATH = "/health"
RELOAD_INTERVAL = 0.25  # seconds between stat() calls on the watched files, only while serving
FRESH_INTERVAL = 0.02  # the same, before refusing credentials (bounds stat() calls under a flood)
RETRY_INTERVAL = 5.0  # seconds before reading a file again after an I/O error
API_VERSION = "1.1"  # PEP 691 + PEP 700
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_V1_TYPE = "application/vnd.pypi.simple.v1+html"
HTML_TYPE = "text/html"
METADATA_DIR = "metadata"
METADATA_SUFFIX = ".metadata"
HMAC_SCHEME = "hmac-sha256"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# Link rel "../../packages/": the same relative hops pypiserver uses, so a path prefix keeps working.
_PACKAGES_FROM_PROJECT = "../../packages/"
_PAGE_PATH = re.compile(r"^/simple/(?:[^/]+/)?$")


# --- tokens ---------------------------------------------------------------------------------------
# Tokens are 40 random letters and digits (~238 bits of entropy): brute force is hopeless whatever
# the hash, so a fast keyed hash (one HMAC-SHA256 with a per-token salt) is enough. A slow KDF such
# as sha256-crypt's 5000 rounds only halved read throughput without adding any protection.


def hash_token(password: str, salt: bytes | None = None) -> str:
    """`hmac-sha256$<salt hex>$<hex HMAC-SHA256(key=salt, msg=password)>`, with a random 16-byte
    salt unless one is given (the portal's own token: the same file bytes on every write)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hmac.new(salt, password.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{HMAC_SCHEME}${salt.hex()}${digest}"


def verify_token(stored: str, password: str) -> bool:
    """Whether `password` matches `stored` (constant-time). Also accepts legacy sha256-crypt
    (`$5$...`) hashes when passlib is importable; anything else never matches."""
    if stored.startswith(HMAC_SCHEME + "$"):
        try:
            _, salt_hex, digest_hex = stored.split("$")
            salt = bytes.fromhex(salt_hex)
        except ValueError:
            return False
        actual = hmac.new(salt, password.encode("utf-8"), hashlib.sha256).hexdigest()
        return hmac.compare_digest(actual, digest_hex)
    if stored.startswith("$5$") and sha256_crypt is not None:
        try:
            return bool(sha256_crypt.verify(password, stored))
        except ValueError:
            return False
    return False


class Tokens:
    """One loaded tokens.json. Successful checks of slow legacy hashes are remembered, keyed by
    user and the sha256 of the password; a reload builds a new object, which clears them."""

    def __init__(self, hashes: dict[str, str]) -> None:
        self.hashes = hashes
        self._verified: set[tuple[str, bytes]] = set()

    def check(self, username: str, password: str) -> bool:
        stored = self.hashes.get(username)
        if stored is None:
            return False
        if stored.startswith(HMAC_SCHEME + "$"):
            return verify_token(stored, password)  # as cheap as a cache lookup
        key = (username, hashlib.sha256(password.encode("utf-8")).digest())
        if key in self._verified:
            return True
        if not verify_token(stored, password):
            return False
        if len(self._verified) < 4096:
            self._verified.add(key)
        return True


def parse_tokens(data: Any) -> Tokens:
    """tokens.json → Tokens. Raises ValueError when the content is not the expected shape."""
    if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(data.get("tokens"), dict):
        raise ValueError('expected {"version": 1, "tokens": {...}}')
    hashes = data["tokens"]
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in hashes.items()):
        raise ValueError("every token must map a user name to a hash string")
    log.info("Loaded %d tokens", len(hashes))
    return Tokens(dict(hashes))


# --- manifest -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ManifestFile:
    filename: str
    project: str
    version: str
    sha256: str
    size: int
    upload_time: str | None
    requires_python: str | None
    yanked: bool | str
    metadata_sha256: str | None


@dataclasses.dataclass(frozen=True)
class Manifest:
    generation: str
    index: str
    upload_url: str
    files: tuple[ManifestFile, ...]


def _optional_str(entry: dict, key: str) -> str | None:
    value = entry.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{entry.get('filename')!r}: {key} must be a string or null")
    return value


def _manifest_file(entry: Any) -> ManifestFile:
    if not isinstance(entry, dict):
        raise ValueError("every file must be an object")
    filename = entry.get("filename")
    # pypiserver's own upload rule: no path separators, no dot files, nothing to escape in HTML.
    if not isinstance(filename, str) or not is_valid_pkg_filename(filename) or filename.startswith("."):
        raise ValueError(f"bad filename {filename!r}")
    project, version, size = entry.get("project"), entry.get("version"), entry.get("size")
    if not isinstance(project, str) or not project or not isinstance(version, str) or not version:
        raise ValueError(f"{filename}: project and version are required")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError(f"{filename}: size must be a non-negative integer")
    sha256, metadata_sha256 = entry.get("sha256"), _optional_str(entry, "metadata_sha256")
    if not isinstance(sha256, str) or not _HEX64.match(sha256):
        raise ValueError(f"{filename}: sha256 must be 64 lowercase hex digits")
    if metadata_sha256 is not None and not _HEX64.match(metadata_sha256):
        raise ValueError(f"{filename}: metadata_sha256 must be 64 lowercase hex digits or null")
    yanked = entry.get("yanked", False)
    if not isinstance(yanked, (bool, str)):
        raise ValueError(f"{filename}: yanked must be true, false or a reason")
    return ManifestFile(
        filename=filename,
        project=normalize_pkgname(project),
        version=version,
        sha256=sha256,
        size=size,
        upload_time=_optional_str(entry, "upload_time"),
        requires_python=_optional_str(entry, "requires_python"),
        yanked=yanked,
        metadata_sha256=metadata_sha256,
    )


def parse_manifest(data: Any) -> Manifest:
    """manifest.json → Manifest. Raises ValueError on any entry that is not as documented: a
    half-broken manifest is refused whole, so the server keeps the last good one."""
    if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(data.get("files"), list):
        raise ValueError('expected {"version": 1, "files": [...]}')
    files = tuple(_manifest_file(entry) for entry in data["files"])
    if len({f.filename for f in files}) != len(files):
        raise ValueError("a file name is listed twice")
    return Manifest(
        generation=str(data.get("generation", "")),
        index=str(data.get("index", "")),
        upload_url=str(data.get("upload_url", "")),
        files=files,
    )


@dataclasses.dataclass(frozen=True)
class ServedFile:
    """A manifest entry present on disk, with the PkgFile pypiserver's routes work with."""

    pkg: PkgFile
    info: ManifestFile
    has_metadata: bool


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What the index serves, rebuilt whenever the manifest or the package folders change."""

    serial: int
    manifest: Manifest
    files: dict[str, ServedFile]
    by_project: dict[str, tuple[ServedFile, ...]]

    @classmethod
    def empty(cls) -> Snapshot:
        return cls(0, Manifest("", "", "", ()), {}, {})


_serials = itertools.count(1)


def _sizes_on_disk(folder: Path, wanted: set[str]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    try:
        entries = os.scandir(folder)
    except FileNotFoundError:
        return sizes
    with entries:
        for entry in entries:
            if entry.name in wanted and entry.is_file(follow_symlinks=False):
                sizes[entry.name] = entry.stat(follow_symlinks=False).st_size
    return sizes


def build_snapshot(manifest: Manifest, packages: Path) -> Snapshot:
    """The manifest's files that lie in `packages` with their listed size (a half-copied or
    swapped-in file of another size is left out and logged); metadata files likewise."""
    root = str(packages)
    on_disk = _sizes_on_disk(packages, {f.filename for f in manifest.files})
    metadata_names = {f.filename + METADATA_SUFFIX for f in manifest.files if f.metadata_sha256}
    metadata_on_disk = _sizes_on_disk(packages / METADATA_DIR, metadata_names)
    served: list[ServedFile] = []
    for info in manifest.files:
        size = on_disk.get(info.filename)
        if size != info.size:
            if size is not None:
                log.warning("Not serving %s: %d bytes on disk, %d in the manifest", info.filename, size, info.size)
            continue
        pkg = PkgFile(info.project, info.version, fn=os.path.join(root, info.filename), root=root, relfn=info.filename)
        pkg.digest = f"sha256={info.sha256}"
        has_metadata = info.filename + METADATA_SUFFIX in metadata_on_disk
        served.append(ServedFile(pkg, info, has_metadata))
    # pypiserver's order on its project page: by version, then file name.
    served.sort(key=lambda s: (s.pkg.parsed_version, s.pkg.relfn))
    by_project: dict[str, list[ServedFile]] = {}
    for item in served:
        by_project.setdefault(item.pkg.pkgname_norm, []).append(item)
    log.info("Manifest generation %r: serving %d of %d files", manifest.generation, len(served), len(manifest.files))
    return Snapshot(
        serial=next(_serials),
        manifest=manifest,
        files={s.info.filename: s for s in served},
        by_project={project: tuple(items) for project, items in by_project.items()},
    )


# --- reloading ------------------------------------------------------------------------------------


def _stat_signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class Watched(Generic[T]):
    """A value loaded from files and reloaded when their stat changes (mtime_ns, size, inode).

    The check runs on the request path, at most every RELOAD_INTERVAL and in one thread at a time;
    the others go on with the current value, so a reload never blocks or fails a request. An idle
    server makes no stat() calls at all (on Azure Files each one is a billed transaction). When
    loading fails (missing or half-written file) the last good value stays and the error is logged
    once per version of the files.
    """

    def __init__(self, what: str, paths: tuple[Path, ...], load: Callable[[], T], initial: T) -> None:
        self.what = what
        self.paths = paths
        self._load = load
        self._value = initial
        self._signature: tuple | None = ()  # never equal to a real signature: the first get() loads
        self._next_check = 0.0
        self._lock = threading.Lock()

    def get(self, *, fresh: bool = False) -> T:
        """The current value; `fresh` checks the files now (at most every FRESH_INTERVAL), for a
        caller that would otherwise refuse something the files may have just allowed."""
        now = time.monotonic()
        due = self._next_check - (RELOAD_INTERVAL - FRESH_INTERVAL if fresh else 0)
        if now >= due and self._lock.acquire(blocking=False):
            try:
                self._next_check = now + RELOAD_INTERVAL
                signature = tuple(_stat_signature(path) for path in self.paths)
                if signature != self._signature:
                    self._signature = signature
                    self._reload()
            finally:
                self._lock.release()
        return self._value

    def _reload(self) -> None:
        try:
            self._value = self._load()
        except ValueError as exc:  # broken content (json.JSONDecodeError too): wait for a new version
            log.error("Could not load the %s (%s); still serving the last good one", self.what, exc)
        except OSError as exc:
            log.error("Could not read the %s (%s); still serving the last good one", self.what, exc)
            if self._signature and self._signature[0] is not None:
                # There but unreadable (a share that hiccuped): read again a little later. A
                # missing file needs no retry: its appearance changes the signature.
                self._signature = ()
                self._next_check = time.monotonic() + RETRY_INTERVAL


def _read_json(path: Path) -> Any:
    with open(path, "rb") as file:
        return json.load(file)


class IndexState:
    """The manifest, the files on disk and the tokens, each kept current by a Watched."""

    def __init__(self, *, manifest: Path, tokens: Path, packages: Path) -> None:
        self.packages = packages
        self.metadata_dir = packages / METADATA_DIR
        self._snapshot = Watched(
            "manifest",
            # The folders' mtimes change when a file is added, renamed or removed.
            (manifest, packages, self.metadata_dir),
            lambda: build_snapshot(parse_manifest(_read_json(manifest)), packages),
            Snapshot.empty(),
        )
        self._tokens = Watched("tokens", (tokens,), lambda: parse_tokens(_read_json(tokens)), Tokens({}))

    def snapshot(self) -> Snapshot:
        return self._snapshot.get()

    def check_token(self, username: str, password: str) -> bool:
        # A token created a moment ago works at once: a refusal looks at the tokens file again.
        return self._tokens.get().check(username, password) or self._tokens.get(fresh=True).check(username, password)


# --- the pypiserver backend -----------------------------------------------------------------------


class ManifestBackend(Backend):
    """A read-only pypiserver Backend over the current Snapshot: no directory walk and no hashing
    per request, so a project page costs the same whatever the size of its files."""

    def __init__(self, config: RunConfig, state: IndexState) -> None:
        super().__init__(config)
        self.state = state

    def served_files(self, project: str) -> tuple[ServedFile, ...]:
        """A project's files with their manifest fields, in pypiserver's order."""
        return self.state.snapshot().by_project.get(normalize_pkgname(project), ())

    def served_file(self, filename: str) -> ServedFile | None:
        return self.state.snapshot().files.get(filename)

    def get_all_packages(self) -> Iterable[PkgFile]:
        return [served.pkg for served in self.state.snapshot().files.values()]

    def find_project_packages(self, project: str) -> Iterable[PkgFile]:
        return [served.pkg for served in self.served_files(project)]

    def find_version(self, name: str, version: str) -> Iterable[PkgFile]:
        return [pkg for pkg in self.find_project_packages(name) if pkg.version == version]

    def get_projects(self) -> Iterable[str]:
        return sorted(self.state.snapshot().by_project)

    def exists(self, filename: str) -> bool:
        return filename in self.state.snapshot().files

    def digest(self, pkg: PkgFile) -> str | None:
        served = self.served_file(pkg.relfn or "")
        return f"sha256={served.info.sha256}" if served else None

    def package_count(self) -> int:
        return len(self.state.snapshot().files)

    def add_package(self, filename: str, stream: Any) -> None:
        raise PermissionError("This index is read-only: the portal publishes files.")

    def remove_package(self, pkg: PkgFile) -> None:
        raise PermissionError("This index is read-only: the portal removes files.")


# --- content negotiation and pages (PEP 503, 629, 691, 700, 592, 658/714) ---------------------------

_ACCEPTED = {
    JSON_TYPE: JSON_TYPE,
    "application/vnd.pypi.simple.latest+json": JSON_TYPE,
    HTML_V1_TYPE: HTML_V1_TYPE,
    "application/vnd.pypi.simple.latest+html": HTML_V1_TYPE,
    HTML_TYPE: HTML_TYPE,
    "text/*": HTML_TYPE,
    "*/*": HTML_TYPE,
}


def negotiate(accept: str | None) -> str:
    """The media type to answer with: the acceptable type with the highest q-value (the first
    listed on a tie); HTML when there is no Accept header or nothing in it is served here."""
    best, best_q = HTML_TYPE, -1.0
    for part in (accept or "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        served = _ACCEPTED.get(media.lower())
        if served is None:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0 and q > best_q:
            best, best_q = served, q
    return best


def _content_type(media: str) -> str:
    return media + "; charset=utf-8" if media != JSON_TYPE else media


def _yanked_json(yanked: bool | str) -> bool | str:
    return yanked if isinstance(yanked, str) else bool(yanked)


def project_json(project: str, files: Iterable[ServedFile], base: str) -> dict:
    """The PEP 691 project detail (api-version 1.1: PEP 700's versions, size and upload-time)."""
    entries, versions = [], []
    for served in files:
        info = served.info
        metadata: dict[str, str] | bool = {"sha256": info.metadata_sha256} if served.has_metadata else False
        entry: dict[str, Any] = {
            "filename": info.filename,
            "url": base + info.filename,
            "hashes": {"sha256": info.sha256},
            "size": info.size,
            "yanked": _yanked_json(info.yanked),
            "core-metadata": metadata,
            "dist-info-metadata": metadata,  # the PEP 658 name, still read by older clients
        }
        if info.requires_python:
            entry["requires-python"] = info.requires_python
        if info.upload_time:
            entry["upload-time"] = info.upload_time
        entries.append(entry)
        if info.version not in versions:
            versions.append(info.version)
    return {"meta": {"api-version": API_VERSION}, "name": project, "versions": versions, "files": entries}


def _html_page(title: str, links: Iterable[str]) -> str:
    body = "\n".join(f"    {link}<br>" for link in links)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n  <head>\n    <meta charset="utf-8">\n'
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
        f"    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n"
        f"    <h1>{html.escape(title)}</h1>\n{body}\n  </body>\n</html>\n"
    )


def project_html(project: str, files: Iterable[ServedFile], base: str) -> str:
    """The PEP 503 project page with PEP 592, 658/714 and data-requires-python attributes."""
    links = []
    for served in files:
        info = served.info
        attrs = [f'href="{html.escape(base + info.filename)}#sha256={info.sha256}"']
        if info.requires_python:
            attrs.append(f'data-requires-python="{html.escape(info.requires_python)}"')
        if info.yanked is not False:
            reason = info.yanked if isinstance(info.yanked, str) else ""
            attrs.append(f'data-yanked="{html.escape(reason)}"')
        if served.has_metadata:
            attrs.append(f'data-core-metadata="sha256={info.metadata_sha256}"')
            attrs.append(f'data-dist-info-metadata="sha256={info.metadata_sha256}"')
        links.append(f"<a {' '.join(attrs)}>{html.escape(info.filename)}</a>")
    return _html_page(f"Links for {project}", links)


def index_json(projects: Iterable[str]) -> dict:
    return {"meta": {"api-version": API_VERSION}, "projects": [{"name": p} for p in projects]}


def index_html(projects: Iterable[str]) -> str:
    return _html_page("Simple Index", (f'<a href="{html.escape(p)}/">{html.escape(p)}</a>' for p in projects))


def _negotiated_body(media: str, as_json: Callable[[], dict], as_html: Callable[[], str]) -> str:
    response.content_type = _content_type(media)
    response.set_header("Vary", "Accept")
    return json.dumps(as_json()) if media == JSON_TYPE else as_html()


def _route_callback(app: Bottle, method: str, rule: str) -> Callable:
    return next(route.callback for route in app.routes if route.method == method and route.rule == rule)


def build_app(state: IndexState) -> Bottle:
    """pypiserver's bottle app, its backend replaced by the manifest, three routes overridden."""
    config = Config.from_args(
        # No auth inside pypiserver: the ReadOnlyIndex front guards every route (see build_wsgi).
        ["run", "--authenticate", ".", "--passwords", ".", "--disable-fallback", "--hash-algo", "sha256",
         "--backend", "simple-dir", "--health-endpoint", HEALTH_PATH, str(state.packages)]
    )  # fmt: skip
    backend = ManifestBackend(config, state)
    config.backend = BackendProxy(backend)  # pypiserver offers no CLI choice for a custom backend
    app = setup_routes_from_config(app_from_config(config), config)
    pypiserver_download = _route_callback(app, "GET", "/packages/:filename#.*#")

    # The project page and the index are overridden in the same app because pypiserver's render
    # only href and hash: PEP 691 JSON, yanking, Requires-Python and metadata need the manifest's
    # fields. They keep its rules: normalization redirect, 404 without fallback, relative links.
    def simple_index() -> str:
        projects = list(config.backend.get_projects())
        media = negotiate(request.get_header("Accept"))
        return _negotiated_body(media, lambda: index_json(projects), lambda: index_html(projects))

    def project_page(project: str) -> Any:
        normalized = normalize_pkgname_for_url(project)
        if project != normalized:
            return redirect(urljoin(request_fullpath(request), f"../{normalized}/"), 301)
        files = backend.served_files(project)
        if not files:
            return HTTPError(404, f"Not Found ({normalized} does not exist)\n\n")
        base = urljoin(request_fullpath(request), _PACKAGES_FROM_PROJECT)
        media = negotiate(request.get_header("Accept"))
        return _negotiated_body(
            media, lambda: project_json(project, files, base), lambda: project_html(project, files, base)
        )

    # PEP 658 metadata files sit beside the URL of their distribution; everything else is
    # pypiserver's download (a file absent from the manifest is a 404 there).
    def download(filename: str) -> Any:
        if filename.endswith(METADATA_SUFFIX):
            served = backend.served_file(filename[: -len(METADATA_SUFFIX)])
            if served is None or not served.has_metadata:
                return HTTPError(404, f"Not Found ({filename} does not exist)\n\n")
            return static_file(filename, root=str(state.metadata_dir), mimetype="text/plain")
        return pypiserver_download(filename)

    def root() -> Any:
        return redirect(request_fullpath(request).rstrip("/") + "/simple/", 303)

    app.route("/", "GET", root)
    app.route("/simple/", "GET", simple_index)
    app.route("/simple/:project/", "GET", project_page)
    app.route("/packages/:filename#.*#", "GET", download)
    return app


# --- the WSGI front -------------------------------------------------------------------------------


def _plain(start_response: Callable, status: str, text: str, headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    body = text.encode("utf-8")
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))), *headers]
    )
    return [body]


def basic_credentials(environ: dict) -> tuple[str, str] | None:
    """The (user, password) of an `Authorization: Basic` header, or None."""
    scheme, _, encoded = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class ReadOnlyIndex:
    """Every request but GET/HEAD /health needs a token from tokens.json (401 otherwise, so pip
    asks again); with one, anything but GET/HEAD is refused with the portal's upload URL."""

    def __init__(self, app: WSGIApp, state: IndexState, realm: str) -> None:
        self.app = app
        self.state = state
        realm = realm.replace("\\", "\\\\").replace('"', '\\"')
        self.challenge = ("WWW-Authenticate", f'Basic realm="{realm}"')

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        if environ.get("PATH_INFO") == HEALTH_PATH and method in ("GET", "HEAD"):
            return self.app(environ, start_response)
        credentials = basic_credentials(environ)
        if credentials is None or not self.state.check_token(*credentials):
            return _plain(start_response, "401 Unauthorized", "Valid index credentials required.\n", [self.challenge])
        environ["REMOTE_USER"] = credentials[0]
        if method not in ("GET", "HEAD"):
            upload_url = self.state.snapshot().manifest.upload_url
            reason, text = "This index is read-only", "This index is read-only.\n"
            if upload_url:
                # twine prints the reason phrase without --verbose, so it names the URL too.
                reason = f"This index is read-only; publish to {upload_url}"
                text += f"Publish with: twine upload --repository-url {upload_url} dist/*\n"
            return _plain(start_response, f"405 {reason}", text, [("Allow", "GET, HEAD")])
        return self.app(environ, start_response)


class PageCache:
    """Keeps rendered /simple/ pages, keyed by (path, negotiated type, snapshot, host, scheme).
    The snapshot serial changes with the manifest generation and with the files on disk, and the
    whole cache is dropped when it does. Bounded in entries and bytes (least recently used go)."""

    def __init__(self, app: WSGIApp, state: IndexState, *, max_entries: int = 1024, max_bytes: int = 64 << 20) -> None:
        self.app = app
        self.state = state
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, tuple[str, list[tuple[str, str]], bytes]] = OrderedDict()
        self._bytes = 0
        self._serial = -1
        self._lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ["REQUEST_METHOD"] != "GET" or not _PAGE_PATH.match(path):
            return self.app(environ, start_response)
        serial = self.state.snapshot().serial
        key = (
            environ.get("SCRIPT_NAME", ""),
            path,
            negotiate(environ.get("HTTP_ACCEPT")),
            environ.get("HTTP_X_FORWARDED_HOST") or environ.get("HTTP_HOST", ""),
            environ.get("HTTP_X_FORWARDED_PROTO") or environ.get("wsgi.url_scheme", ""),
        )
        with self._lock:
            if serial != self._serial:
                self._entries.clear()
                self._bytes = 0
                self._serial = serial
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
        if hit is None:
            hit = self._render(environ)
            if hit[0].startswith("200 "):
                self._store(serial, key, hit)
        status, headers, body = hit
        start_response(status, list(headers))
        return [body]

    def _store(self, serial: int, key: tuple, entry: tuple[str, list[tuple[str, str]], bytes]) -> None:
        size = len(entry[2])
        if size > self.max_bytes // 8:
            return  # a huge page would push out everything else
        with self._lock:
            if serial != self._serial:
                return
            old = self._entries.pop(key, None)
            self._bytes += size - (len(old[2]) if old else 0)
            self._entries[key] = entry
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= len(dropped[2])

    def _render(self, environ: dict) -> tuple[str, list[tuple[str, str]], bytes]:
        started: list = []
        chunks: list[bytes] = []

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            started[:] = [status, headers]
            return chunks.append

        result = self.app(environ, start)
        try:
            chunks.extend(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        return started[0], started[1], b"".join(chunks)


class _LoggedFile(ReadOnlyFileBasedBuffer):
    """waitress's file wrapper (so downloads keep its zero-copy path) that reports on close."""

    def __init__(self, file: Any, block_size: int, on_close: Callable[[int], None]) -> None:
        super().__init__(file, block_size)
        self._on_close: Callable[[int], None] | None = on_close
        self._prepared: int | None = None
        self._iterated = 0

    def prepare(self, size: int | None = None) -> int:
        self._prepared = super().prepare(size)
        return self._prepared

    def __next__(self) -> bytes:
        chunk = super().__next__()
        self._iterated += len(chunk)
        return chunk

    next = __next__

    def close(self) -> None:
        sent = self._iterated if not self._prepared else self._prepared - self.remain
        try:
            super().close()
        finally:
            if self._on_close is not None:
                on_close, self._on_close = self._on_close, None
                on_close(sent)


class _LoggedBody:
    def __init__(self, body: Iterable[bytes], on_close: Callable[[int], None]) -> None:
        self._body = body
        self._on_close = on_close
        self._sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            self._sent += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            if hasattr(self._body, "close"):
                self._body.close()
        finally:
            self._on_close(self._sent)


def _printable(text: str) -> str:
    return text.encode("ascii", "backslashreplace").decode("ascii").replace('"', '\\"')


class AccessLog:
    """One line per request on stdout once its body is sent: client, user (only once
    authenticated, never a password), method, path, status, bytes, milliseconds."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        status = ["-"]

        def start(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            status[0] = status_line.split(" ", 1)[0]
            return start_response(status_line, headers, exc_info)

        def done(sent: int) -> None:
            access_log.info(
                '%s %s "%s %s" %s %d %.1fms',
                environ.get("REMOTE_ADDR", "-"),
                _printable(environ.get("REMOTE_USER") or "-"),
                environ["REQUEST_METHOD"],
                _printable(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")),
                status[0],
                sent,
                (time.perf_counter() - started) * 1000,
            )

        environ["wsgi.file_wrapper"] = lambda file, block_size=32768: _LoggedFile(file, block_size, done)
        try:
            result = self.app(environ, start)
        except Exception:
            status[0] = "500"
            done(0)
            raise
        return result if isinstance(result, _LoggedFile) else _LoggedBody(result, done)


def build_wsgi(state: IndexState, *, realm: str) -> WSGIApp:
    """The whole server as one WSGI app: access log → auth and read-only → page cache → pypiserver."""
    return AccessLog(ReadOnlyIndex(PageCache(build_app(state), state), state, realm))


# --- command line ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A read-only pypiserver serving the portal's manifest.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--manifest", type=Path, required=True, help="manifest.json written by the portal")
    parser.add_argument("--tokens", type=Path, required=True, help="tokens.json written by the portal")
    parser.add_argument("--packages", type=Path, required=True, help="the folder holding the distributions")
    parser.add_argument("--realm", default="pypi", help="the HTTP Basic realm")
    parser.add_argument("--threads", type=int, default=8)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("pypiserver").setLevel(logging.WARNING)  # it logs every request environ at INFO
    to_stdout = logging.StreamHandler(sys.stdout)
    to_stdout.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    access_log.addHandler(to_stdout)
    access_log.propagate = False
    state = IndexState(manifest=args.manifest, tokens=args.tokens, packages=args.packages.resolve())
    state.snapshot()  # load both now, so that a problem shows in the log at start
    state.check_token("", "")
    waitress.serve(
        build_wsgi(state, realm=args.realm),
        host=args.host,
        port=args.port,
        threads=args.threads,
        ident="index-server",
        # Caddy runs on loopback in the same container group: only it may say the client used https.
        trusted_proxy="127.0.0.1",
        # X-Forwarded-For too, so that the access log shows the client's address.
        trusted_proxy_headers={"x-forwarded-proto", "x-forwarded-host", "x-forwarded-for"},
        clear_untrusted_proxy_headers=True,
    )


if __name__ == "__main__":
    main()
