"""Distribution validation: the one gate every file passes before it reaches an index's share.

Used by the upload view, the PyPI mirror and any future API. Everything here works on a file
that is already on local disk (the upload's temporary file), reads it in chunks, and raises
`DistributionError` with a message written for the person who uploaded the file.

Checks, in order: the file name (a wheel per PEP 427/491, an sdist per PEP 625 or the older
`.tar.gz`/`.zip` forms, parsed with `packaging.utils`; plain ASCII, no path separators), the
size (not empty, not over the limit), then the archive itself: a valid zip or gzip tar, entry
count and uncompressed size capped against zip bombs, every entry's CRC checked, no entry that
could land outside the install folder (absolute, `..`, backslash, drive letter, links). Then
the layout pip relies on: a wheel has exactly one `{name}-{version}.dist-info` holding METADATA,
WHEEL (Wheel-Version 1.x) and RECORD; an sdist has exactly one top folder `{name}-{version}`
holding PKG-INFO. Last the metadata: a known Metadata-Version, and Name and Version the same
(normalized) project and version as the file name.

A file is identified by `identity` (its parsed, normalized name), not its spelling, so the
immutability rules see `Foo_Bar-1.0-…` and `foo_bar-1.0.0-…` as the same file.
"""

from __future__ import annotations

import gzip
import hashlib
import posixpath
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import Message
from email.parser import Parser
from email.policy import compat32
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.template.defaultfilters import filesizeformat
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag
from packaging.utils import (
    BuildTag,
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

# Letters, digits and the punctuation distribution file names actually use. `packaging` accepts
# any Unicode word character in a wheel name, so this is checked first: look-alike letters and
# spaces in a file name are how a confusing or malicious upload hides in a listing.
FILENAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+!-]*$")
MAX_FILENAME_LENGTH = 255
CHUNK_SIZE = 1024 * 1024
# Archives smaller than this uncompressed are never refused for their compression ratio:
# a small wheel of highly repetitive text is normal, a bomb needs volume.
RATIO_EXEMPT_BYTES = 16 * 1024 * 1024
# METADATA / PKG-INFO larger than this is not a metadata file anyone wrote by hand or tool.
MAX_METADATA_BYTES = 8 * 1024 * 1024
# The core metadata specification's versions. 2.0 was never a final standard, but bdist_wheel
# wrote it from 2013 to 2017 (six 1.10.0's wheel on PyPI says 2.0) and pip installs those.
# pax headers (extended tar headers) beyond these are refused: see _PaxCheckedTarInfo.
MAX_PAX_HEADER_BYTES = 64 * 1024
MAX_PAX_BYTES = 4 * 1024 * 1024
MAX_PAX_DIGIT_RUN = 32
KNOWN_METADATA_VERSIONS = ("1.0", "1.1", "1.2", "2.0", "2.1", "2.2", "2.3", "2.4")
REBUILD = "Build it with a standard tool (python -m build, uv build or pip wheel) and upload the file from dist/."


class DistributionError(Exception):
    """A file is not an acceptable distribution. `message` is shown to the uploader as is."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class DistributionName:
    filename: str
    kind: str  # "wheel" | "sdist"
    project: str  # normalized (PEP 503)
    version: str  # normalized (PEP 440)
    identity: str  # see distribution_identity()


@dataclass(frozen=True)
class ValidatedDistribution:
    filename: str
    kind: str
    project: str
    version: str
    size: int
    sha256: str
    identity: str
    # The wheel's .dist-info/METADATA exactly as in the archive (served as the PEP 658 file);
    # None for sdists.
    metadata: bytes | None
    requires_python: str | None


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_uncompressed_bytes: int
    max_entries: int
    max_compression_ratio: int

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(
            max_bytes=settings.PACKAGES_MAX_UPLOAD_BYTES,
            max_uncompressed_bytes=settings.PACKAGES_MAX_UNCOMPRESSED_BYTES,
            max_entries=settings.PACKAGES_MAX_ARCHIVE_ENTRIES,
            max_compression_ratio=settings.PACKAGES_MAX_COMPRESSION_RATIO,
        )


# Given an archive's entry names, raises DistributionError for a bad layout or returns the
# names of the small files (metadata) to keep while the archive is read through.
_WantedFiles = Callable[[list[str]], set[str]]


@dataclass(frozen=True)
class _Archive:
    """What one pass over an archive learnt: its entry names and the small files asked for."""

    names: list[str]
    wanted: dict[str, bytes]


def parse_distribution_filename(filename: str) -> DistributionName:
    """Parse a wheel or sdist file name. Raises DistributionError for anything else."""
    if not isinstance(filename, str) or not filename:
        raise DistributionError("The file has no name.", code="name")
    if "/" in filename or "\\" in filename or "\x00" in filename or filename in {".", ".."}:
        raise DistributionError("The file name must not contain a path (no '/', '\\' or '..').", code="name-path")
    if len(filename) > MAX_FILENAME_LENGTH:
        raise DistributionError(f"The file name is longer than {MAX_FILENAME_LENGTH} characters.", code="name")
    if not FILENAME_RE.match(filename):
        raise DistributionError(
            "The file name may only contain ASCII letters, digits and . _ + ! - (no spaces, no other characters).",
            code="name-characters",
        )
    if ".." in filename:
        raise DistributionError("The file name must not contain '..'.", code="name-path")

    lower = filename.lower()
    try:
        if lower.endswith(".whl"):
            name, version, build, tags = parse_wheel_filename(filename)
            identity = _wheel_identity(name, version, build, tags)
            kind = "wheel"
        elif lower.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
            identity = f"sdist:{canonicalize_name(name)}:{canonicalize_version(version)}"
            kind = "sdist"
        else:
            raise DistributionError(
                "Not a Python distribution: expected a wheel (.whl) or a source distribution (.tar.gz or .zip).",
                code="type",
            )
    except InvalidWheelFilename as exc:
        raise DistributionError(f"Not a valid wheel file name: {exc}", code="name") from exc
    except (InvalidSdistFilename, InvalidVersion) as exc:
        raise DistributionError(f"Not a valid source distribution file name: {exc}", code="name") from exc
    return DistributionName(
        filename=filename, kind=kind, project=canonicalize_name(name), version=str(version), identity=identity
    )


def distribution_identity(filename: str) -> str:
    """The file's identity for the immutability rules, from its name alone: two names with the
    same identity are the same file, however they are spelt. A wheel:
    `wheel:{project}:{version}:{build tag}:{interpreters}-{abis}-{platforms}`, an sdist (one per
    release, whatever its format): `sdist:{project}:{version}`. The project is PEP 503
    normalized, the version PEP 440 normalized without trailing zeros (1.0 == 1.0.0), each tag
    part sorted and lowercase. Raises DistributionError when the name is not a distribution's."""
    return parse_distribution_filename(filename).identity


def _wheel_identity(name: str, version: Version, build: BuildTag, tags: frozenset[Tag]) -> str:
    build_tag = f"{build[0]}{build[1]}" if build else ""
    # A file name's tag set is always interpreters x abis x platforms, so the three sorted sets
    # describe it exactly, whatever order the name listed them in.
    compressed = "-".join(
        ".".join(sorted({getattr(tag, part) for tag in tags})) for part in ("interpreter", "abi", "platform")
    )
    return f"wheel:{canonicalize_name(name)}:{canonicalize_version(version)}:{build_tag}:{compressed}"


def sha256_of_chunks(chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return sha256_of_chunks(iter(lambda: handle.read(CHUNK_SIZE), b""))


def validate_distribution(
    path: Path | str,
    filename: str,
    *,
    sha256: str | None = None,
    limits: Limits | None = None,
) -> ValidatedDistribution:
    """Check the file at `path`, to be published as `filename`. Returns what was learnt about
    it; raises DistributionError with a message for the uploader. `sha256` may be passed when
    the caller already hashed the bytes while receiving them (saves a read of the file)."""
    path = Path(path)
    limits = limits or Limits.from_settings()
    name = parse_distribution_filename(filename)
    size = path.stat().st_size
    if size == 0:
        raise DistributionError("The file is empty.", code="empty")
    if size > limits.max_bytes:
        raise DistributionError(
            f"The file is {filesizeformat(size)}; the limit is {filesizeformat(limits.max_bytes)}.",
            code="too-large",
        )
    if name.kind == "wheel":
        raw_metadata = _check_wheel(path, name, size, limits)
        requires_python = _check_metadata(raw_metadata, name, what="METADATA")
        metadata: bytes | None = raw_metadata
    else:
        raw_metadata = _check_sdist(path, name, size, limits)
        requires_python = _check_metadata(raw_metadata, name, what="PKG-INFO")
        metadata = None
    return ValidatedDistribution(
        filename=filename,
        kind=name.kind,
        project=name.project,
        version=name.version,
        size=size,
        sha256=sha256 or file_sha256(path),
        identity=name.identity,
        metadata=metadata,
        requires_python=requires_python,
    )


def _check_wheel(path: Path, name: DistributionName, size: int, limits: Limits) -> bytes:
    """The wheel's layout as pip's installer enforces it. Returns METADATA's bytes."""
    info_dir = ""

    def wanted(names: list[str]) -> set[str]:
        nonlocal info_dir
        info_dir = _wheel_info_dir(names, name)
        missing = [f for f in ("METADATA", "WHEEL", "RECORD") if f"{info_dir}/{f}" not in names]
        if missing:
            raise DistributionError(
                f"The wheel has no {info_dir}/{missing[0]} file; pip refuses to install a wheel without "
                f"METADATA, WHEEL and RECORD. {REBUILD}",
                code="wheel-" + missing[0].lower(),
            )
        return {f"{info_dir}/METADATA", f"{info_dir}/WHEEL"}

    archive = _read_zip(path, "wheel", size, limits, wanted)
    _check_wheel_version(archive.wanted[f"{info_dir}/WHEEL"], info_dir)
    return archive.wanted[f"{info_dir}/METADATA"]


def _wheel_info_dir(names: list[str], name: DistributionName) -> str:
    # The same rule as pip: the .dist-info directories are the top-level names ending so.
    info_dirs = sorted({n.split("/", 1)[0] for n in names if n.split("/", 1)[0].endswith(".dist-info")})
    expected = f"{name.project.replace('-', '_')}-{name.version}.dist-info"
    if not info_dirs:
        raise DistributionError(
            f"The wheel has no .dist-info directory (expected {expected}/), so pip cannot install it. {REBUILD}",
            code="no-dist-info",
        )
    if len(info_dirs) > 1:
        raise DistributionError(
            f"The wheel has {len(info_dirs)} .dist-info directories ({', '.join(info_dirs)}); a wheel must have "
            f"exactly one, {expected}/. Delete the build/ folder (it keeps files of earlier builds) and rebuild.",
            code="many-dist-info",
        )
    if not _is_name_and_version(info_dirs[0].removesuffix(".dist-info"), name):
        raise DistributionError(
            f"The wheel's .dist-info directory is {info_dirs[0]}/, but the file name says project "
            f"{name.project!r} version {name.version!r} (expected {expected}/). Rebuild the wheel instead of "
            "renaming it.",
            code="dist-info-name",
        )
    return info_dirs[0]


def _is_name_and_version(stem: str, name: DistributionName) -> bool:
    """Whether `stem` is `{project}-{version}` for the file's project and version, compared
    normalized. Every hyphen is tried as the separator: old tools left hyphens in names."""
    for at in (i for i, char in enumerate(stem) if char == "-"):
        project, version = stem[:at], stem[at + 1 :]
        if canonicalize_name(project) == name.project and _same_version(version, name.version):
            return True
    return False


def _same_version(left: str, right: str) -> bool:
    try:
        return Version(left) == Version(right)
    except InvalidVersion:
        return False


def _check_wheel_version(raw: bytes, info_dir: str) -> None:
    declared = (_headers(raw).get("Wheel-Version") or "").strip()
    # As pip reads it: every part an integer, and the major version 1.
    if not re.fullmatch(r"1(\.[0-9]+)*", declared):
        found = f"declares Wheel-Version {declared!r}" if declared else "has no Wheel-Version"
        raise DistributionError(
            f"The wheel's {info_dir}/WHEEL file {found}; pip installs wheels of format version 1.x only. {REBUILD}",
            code="wheel-version",
        )


def _check_sdist(path: Path, name: DistributionName, size: int, limits: Limits) -> bytes:
    """One top folder `{name}-{version}` holding PKG-INFO (PEP 625's layout). Returns PKG-INFO."""
    top_names: set[str] = set()

    def wanted(names: list[str]) -> set[str]:
        top = _sdist_top(names, name)
        top_names.add(top)
        return {f"{top}/PKG-INFO"}

    if name.filename.lower().endswith(".zip"):
        archive = _read_zip(path, "source distribution", size, limits, wanted)
    else:
        archive = _read_tar(path, size, limits)
        wanted(archive.names)
    pkg_info = f"{top_names.pop()}/PKG-INFO"
    if pkg_info not in archive.wanted:
        raise DistributionError(
            f"The source distribution has no {pkg_info} file; pip and the index read the project's metadata "
            "from it. Build the sdist with python -m build --sdist (or uv build --sdist).",
            code="no-pkg-info",
        )
    return archive.wanted[pkg_info]


def _sdist_top(names: list[str], name: DistributionName) -> str:
    expected = f"{name.project.replace('-', '_')}-{name.version}"
    tops = sorted({n.split("/", 1)[0] for n in names})
    if len(tops) != 1:
        shown = ", ".join(tops[:5]) + (", …" if len(tops) > 5 else "")
        raise DistributionError(
            f"A source distribution must hold everything in one top-level folder ({expected}/); this one has "
            f"{len(tops)} top-level entries ({shown}). Build it with python -m build --sdist.",
            code="sdist-layout",
        )
    if not _is_name_and_version(tops[0], name):
        raise DistributionError(
            f"The source distribution's top-level folder is {tops[0]}/, but the file name says project "
            f"{name.project!r} version {name.version!r} (expected {expected}/). Rebuild it instead of renaming it.",
            code="sdist-top-name",
        )
    return tops[0]


def _bomb_error(limits: Limits) -> DistributionError:
    return DistributionError(
        "The archive unpacks to more than "
        f"{filesizeformat(limits.max_uncompressed_bytes)} or is compressed suspiciously well "
        "(a zip bomb?).",
        code="bomb",
    )


def _check_ratio(total: int, size: int, limits: Limits) -> None:
    if total > limits.max_uncompressed_bytes:
        raise _bomb_error(limits)
    if total > RATIO_EXEMPT_BYTES and total > size * limits.max_compression_ratio:
        raise _bomb_error(limits)


def _check_entry_path(member_name: str) -> None:
    """Refuse a path that could be written outside the folder it is unpacked in, on any OS."""
    parts = member_name.split("/")
    if member_name.startswith("/") or "\\" in member_name or ".." in parts or ":" in parts[0]:
        raise DistributionError(
            f"The archive contains an entry with an unsafe path: {member_name!r}. Absolute paths, '..', "
            f"backslashes and drive letters could write outside the install folder. {REBUILD}",
            code="unsafe-path",
        )


def _link_error(member_name: str, target: str, why: str) -> DistributionError:
    return DistributionError(
        f"The archive contains a link, {member_name!r} -> {target!r}, {why}. Put the file itself in the "
        "archive instead of a link, and rebuild.",
        code="link",
    )


def _read_zip(path: Path, kind: str, size: int, limits: Limits, wanted: _WantedFiles) -> _Archive:
    """Check a zip's entries (count, sizes, paths, no links, no duplicates), ask `wanted` which
    small files to keep once the names are known (it raises for a bad layout), then read every
    entry through so a damaged one (CRC) is found here, not by pip."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if len(infos) > limits.max_entries:
                raise DistributionError(
                    f"The archive has {len(infos)} entries; the limit is {limits.max_entries}.",
                    code="bomb",
                )
            # Declared sizes first: cheap, and zipfile never returns more than an entry declares.
            _check_ratio(sum(info.file_size for info in infos), size, limits)
            names: list[str] = []
            for info in infos:
                _check_entry_path(info.filename)
                if stat.S_ISLNK(info.external_attr >> 16):
                    with archive.open(info) as member:
                        target = member.read(200).decode("utf-8", "replace")
                    raise _link_error(info.filename, target, f"and a {kind} in a zip may not contain links")
                names.append(info.filename.rstrip("/"))
            if len(set(names)) != len(names):
                duplicate = next(n for n in names if names.count(n) > 1)
                raise DistributionError(
                    f"The archive contains {duplicate!r} more than once; tools would disagree on which copy "
                    f"counts. {REBUILD}",
                    code="duplicate-entry",
                )
            keep = wanted(names)
            found: dict[str, bytes] = {}
            for info in infos:
                if info.is_dir():
                    continue
                if info.filename in keep and info.file_size > MAX_METADATA_BYTES:
                    raise DistributionError(
                        f"{info.filename} is unreasonably large for a metadata file.", code="metadata"
                    )
                try:
                    with archive.open(info) as member:
                        if info.filename in keep:
                            found[info.filename] = member.read()
                        else:
                            while member.read(CHUNK_SIZE):
                                pass
                except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                    raise DistributionError(
                        f"The {kind} is damaged: {info.filename!r} cannot be read ({exc}). Upload it again; if it "
                        "was copied, check the copy is complete.",
                        code="corrupt",
                    ) from exc
            return _Archive(names=names, wanted=found)
    except DistributionError:
        raise
    except zipfile.BadZipFile as exc:
        raise DistributionError(
            f"The {kind} is not a valid zip archive ({exc}). A .{'whl' if kind == 'wheel' else 'zip'} file must "
            f"be a complete zip file. {REBUILD}",
            code="not-zip",
        ) from exc
    except (zlib.error, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
        # zlib.error: damaged deflate data; RuntimeError: encrypted entries; NotImplementedError:
        # a compression method zipfile cannot read (pip could not either); the rest: truncation.
        raise DistributionError(f"The {kind} is damaged and cannot be read ({exc}). {REBUILD}", code="corrupt") from exc


class _BoundedReader:
    """The decompressed bytes of a .tar.gz, refused as a bomb once they pass the limits. Counts
    everything tarfile reads (headers, padding and long-name records too), not only what the
    members declare."""

    def __init__(self, raw: BinaryIO, size: int, limits: Limits) -> None:
        self._raw, self._size, self._limits = raw, size, limits
        self.total = 0

    def read(self, count: int = -1) -> bytes:
        data = self._raw.read(count)
        self.total += len(data)
        _check_ratio(self.total, self._size, self._limits)
        return data


class _PaxCheckedTarInfo(tarfile.TarInfo):
    """Python before 3.11.10 parses a pax header in time quadratic in its runs of digits
    (CVE-2024-6232; a 256 KB header of digits took 287 s on this machine's 3.11.7), so a 1 KB
    upload could hold a worker for hours. Headers too big or with long digit runs are refused
    before tarfile parses them; real ones are a few hundred bytes (long paths, times, sizes)."""

    def _proc_pax(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        budget = getattr(tar, "pax_budget", MAX_PAX_BYTES) - self.size
        if self.size > MAX_PAX_HEADER_BYTES or budget < 0:
            raise _pax_error()
        tar.pax_budget = budget  # type: ignore[attr-defined]
        stream = tar.fileobj
        tar.fileobj = _PaxHeaderCheck(stream)
        try:
            return super()._proc_pax(tar)  # type: ignore[misc]
        finally:
            tar.fileobj = stream


class _PaxHeaderCheck:
    """tarfile's stream, whose first read (the pax header's bytes) is checked for digit runs."""

    def __init__(self, stream: object) -> None:
        self._stream, self._checked = stream, False

    def read(self, count: int) -> bytes:
        data = self._stream.read(count)  # type: ignore[attr-defined]
        if not self._checked and re.search(rb"[0-9]{%d}" % (MAX_PAX_DIGIT_RUN + 1), data):
            raise _pax_error()
        self._checked = True
        return data

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def _pax_error() -> DistributionError:
    return DistributionError(
        "The source distribution has an oversized or malformed extended (pax) tar header. Build it with "
        "python -m build --sdist.",
        code="pax-header",
    )


def _read_tar(path: Path, size: int, limits: Limits) -> _Archive:
    """One streaming pass over a .tar.gz: entry count and sizes, safe paths, only files,
    folders and links that stay inside the top folder. Keeps every `<top>/PKG-INFO`."""
    names: list[str] = []
    found: dict[str, bytes] = {}
    declared = 0
    try:
        with (
            gzip.open(path, "rb") as raw,
            tarfile.open(fileobj=_BoundedReader(raw, size, limits), mode="r|", tarinfo=_PaxCheckedTarInfo) as tar,
        ):
            for member in tar:
                names.append(member.name)
                if len(names) > limits.max_entries:
                    raise DistributionError(f"The archive has more than {limits.max_entries} entries.", code="bomb")
                _check_entry_path(member.name)
                declared += member.size
                _check_ratio(declared, size, limits)
                if member.issym() or member.islnk():
                    _check_tar_link(member)
                elif not (member.isfile() or member.isdir()):
                    raise DistributionError(
                        f"The archive contains {member.name!r}, which is a device or pipe, not a file or folder. "
                        "Build the sdist with python -m build --sdist.",
                        code="special-file",
                    )
                elif member.isfile() and re.fullmatch(r"[^/]+/PKG-INFO", member.name):
                    if member.size > MAX_METADATA_BYTES:
                        raise DistributionError(
                            f"{member.name} is unreasonably large for a metadata file.", code="metadata"
                        )
                    extracted = tar.extractfile(member)
                    found[member.name] = extracted.read() if extracted else b""
    except DistributionError:
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError, zlib.error, RecursionError) as exc:
        # OSError covers gzip.BadGzipFile (not gzip at all); EOFError a truncated file;
        # RecursionError a chain of thousands of pax headers (tarfile reads them recursively).
        raise DistributionError(
            f"The source distribution is not a valid .tar.gz archive ({exc}). Build it with python -m build "
            "--sdist and upload the .tar.gz from dist/.",
            code="not-tar",
        ) from exc
    if not names:
        raise DistributionError("The source distribution is an empty archive.", code="not-tar")
    return _Archive(names=names, wanted=found)


def _check_tar_link(member: tarfile.TarInfo) -> None:
    """A link must point inside the member's own top folder: a symlink's target is relative to
    the link's folder, a hard link's to the archive root (as tarfile's extraction filters read them)."""
    target = member.linkname
    if not target or target.startswith("/") or "\\" in target or ":" in target.split("/")[0]:
        raise _link_error(member.name, target, "which points to an absolute path")
    base = posixpath.dirname(member.name) if member.issym() else ""
    resolved = posixpath.normpath(posixpath.join(base, target))
    if resolved.split("/")[0] != member.name.split("/")[0]:
        raise _link_error(member.name, target, "which points outside the source distribution's folder")


def _headers(raw: bytes) -> Message:
    # Core metadata is UTF-8 (PEP 566); parsed as text, every header is a str (parsed as bytes,
    # a non-ASCII value comes back as an email Header object).
    return Parser(policy=compat32).parsestr(raw.decode("utf-8", errors="replace"), headersonly=True)


def _check_metadata(raw: bytes, name: DistributionName, *, what: str) -> str | None:
    """METADATA / PKG-INFO: a known Metadata-Version, the file name's project and version, a
    valid Requires-Python. Returns Requires-Python (None when absent)."""
    message = _headers(raw)
    metadata_version = (message.get("Metadata-Version") or "").strip()
    if metadata_version not in KNOWN_METADATA_VERSIONS:
        found = f"declares Metadata-Version {metadata_version!r}" if metadata_version else "has no Metadata-Version"
        raise DistributionError(
            f"The {what} file {found}; known versions are {', '.join(KNOWN_METADATA_VERSIONS)}. {REBUILD}",
            code="metadata-version",
        )
    meta_name = (message.get("Name") or "").strip()
    meta_version = (message.get("Version") or "").strip()
    if not meta_name or not meta_version:
        raise DistributionError(f"The {what} file has no Name or no Version. {REBUILD}", code="metadata")
    if canonicalize_name(meta_name) != name.project:
        raise DistributionError(
            f"The {what} names the project {meta_name!r}, but the file name says {name.project!r}. Rebuild the "
            "file instead of renaming it.",
            code="metadata-mismatch",
        )
    if not _same_version(meta_version, name.version):
        raise DistributionError(
            f"The {what} gives version {meta_version!r}, but the file name says {name.version!r}. Rebuild the "
            "file instead of renaming it.",
            code="metadata-mismatch",
        )
    requires_python = message.get("Requires-Python")
    if requires_python is None:
        return None
    requires_python = requires_python.strip()
    try:
        SpecifierSet(requires_python)
    except InvalidSpecifier as exc:
        raise DistributionError(
            f"The {what} has an invalid Requires-Python, {requires_python!r} (write it like '>=3.9'). Fix it in "
            "the project's configuration and rebuild.",
            code="requires-python",
        ) from exc
    return requires_python
