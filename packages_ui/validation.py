"""Distribution validation: the one gate every file passes before it reaches an index's share.

Used by the upload view, the PyPI mirror and any future API. Everything here works on a file
that is already on local disk (the upload's temporary file), reads it in chunks, and raises
`DistributionError` with a message written for the person who uploaded the file.

Checks, in order: the file name (a wheel per PEP 427/491, an sdist per PEP 625 or the older
`.tar.gz`/`.zip` forms, parsed with `packaging.utils`; plain ASCII, no path separators), the
size (not empty, not over the limit), then the archive itself (a valid zip or gzip tar, entry
count and total uncompressed size capped against zip bombs, every entry's CRC checked) and its
metadata (the wheel's `.dist-info/METADATA` or the sdist's `PKG-INFO` must name the same
project and version as the file name).
"""

from __future__ import annotations

import hashlib
import re
import tarfile
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import compat32
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.template.defaultfilters import filesizeformat
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
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


@dataclass(frozen=True)
class ValidatedDistribution:
    filename: str
    kind: str
    project: str
    version: str
    size: int
    sha256: str
    identity: str = ""
    metadata: bytes | None = None
    requires_python: str | None = None


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
            name, version, _build, _tags = parse_wheel_filename(filename)
            kind = "wheel"
        elif lower.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
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
    return DistributionName(filename=filename, kind=kind, project=canonicalize_name(name), version=str(version))


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
    if name.kind == "wheel" or name.filename.lower().endswith(".zip"):
        metadata = _check_zip(path, name, size, limits)
    else:
        metadata = _check_tar(path, name, size, limits)
    _check_metadata(metadata, name)
    headers = BytesParser(policy=compat32).parsebytes(metadata, headersonly=True)
    return ValidatedDistribution(
        filename=filename,
        kind=name.kind,
        project=name.project,
        version=name.version,
        size=size,
        sha256=sha256 or file_sha256(path),
        identity=distribution_identity(filename),
        metadata=metadata if name.kind == "wheel" else None,
        requires_python=(headers.get("Requires-Python") or "").strip() or None,
    )


def distribution_identity(filename: str) -> str:
    """PROVISIONAL (validation branch replaces it)."""
    from packaging.utils import canonicalize_version, parse_sdist_filename, parse_wheel_filename

    try:
        if filename.endswith(".whl"):
            n, v, b, t = parse_wheel_filename(filename)
            build_tag = "".join(str(x) for x in b) if b else ""
            return f"wheel:{n}:{canonicalize_version(v)}:{build_tag}:{'.'.join(sorted(str(x) for x in t))}"
        n, v = parse_sdist_filename(filename)
        return f"sdist:{n}:{canonicalize_version(v)}"
    except Exception as exc:
        raise DistributionError(str(exc), code="name") from exc


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


def _is_unsafe_member(member_name: str) -> bool:
    parts = PurePosixPath(member_name.replace("\\", "/")).parts
    return member_name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0])


def _metadata_member(names: list[str], name: DistributionName) -> str:
    """The path of METADATA (wheel) or PKG-INFO (sdist) inside the archive."""
    if name.kind == "wheel":
        candidates = [n for n in names if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
        label = "a .dist-info/METADATA file"
    else:
        candidates = [n for n in names if re.fullmatch(r"[^/]+/PKG-INFO", n)]
        label = "a PKG-INFO file in its top folder"
    if len(candidates) != 1:
        found = "none" if not candidates else f"{len(candidates)}"
        raise DistributionError(f"The archive must contain exactly one {label} (found {found}).", code="metadata")
    return candidates[0]


def _check_zip(path: Path, name: DistributionName, size: int, limits: Limits) -> bytes:
    kind = "wheel" if name.kind == "wheel" else "zip"
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if len(infos) > limits.max_entries:
                raise DistributionError(
                    f"The archive has {len(infos)} entries; the limit is {limits.max_entries}.",
                    code="bomb",
                )
            # Declared sizes first (cheap, and zipfile never returns more than an entry declares),
            # then every entry is read through once so a CRC mismatch shows up here, not in pip.
            _check_ratio(sum(info.file_size for info in infos), size, limits)
            for info in infos:
                if _is_unsafe_member(info.filename):
                    raise DistributionError(f"The archive contains an unsafe path: {info.filename!r}.", code="corrupt")
            metadata_name = _metadata_member([i.filename for i in infos], name)
            metadata = b""
            for info in infos:
                if info.is_dir():
                    continue
                keep = info.filename == metadata_name
                if keep and info.file_size > MAX_METADATA_BYTES:
                    raise DistributionError("The metadata file is unreasonably large.", code="metadata")
                try:
                    with archive.open(info) as member:
                        while chunk := member.read(CHUNK_SIZE):
                            if keep:
                                metadata += chunk
                except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                    raise DistributionError(
                        f"The {kind} is damaged: {info.filename!r} cannot be read ({exc}).", code="corrupt"
                    ) from exc
            return metadata
    except DistributionError:
        raise
    except zipfile.BadZipFile as exc:
        raise DistributionError(f"The {kind} is not a valid zip archive ({exc}).", code="corrupt") from exc
    except (zlib.error, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
        # zlib.error: damaged deflate data; RuntimeError: encrypted entries; NotImplementedError:
        # a compression method zipfile cannot read (pip could not either); the rest: truncation.
        raise DistributionError(f"The {kind} is damaged and cannot be read ({exc}).", code="corrupt") from exc


def _check_tar(path: Path, name: DistributionName, size: int, limits: Limits) -> bytes:
    metadata_by_name: dict[str, bytes] = {}
    names: list[str] = []
    total = 0
    try:
        # Streaming mode ("r|gz"): one pass, nothing seeks back, members read in order.
        with tarfile.open(path, mode="r|gz") as archive:
            for member in archive:
                names.append(member.name)
                if len(names) > limits.max_entries:
                    raise DistributionError(f"The archive has more than {limits.max_entries} entries.", code="bomb")
                if (
                    _is_unsafe_member(member.name)
                    or member.isdev()
                    or ((member.issym() or member.islnk()) and _is_unsafe_member(member.linkname))
                ):
                    raise DistributionError(f"The archive contains an unsafe entry: {member.name!r}.", code="corrupt")
                total += member.size
                _check_ratio(total, size, limits)
                if member.isfile() and re.fullmatch(r"[^/]+/PKG-INFO", member.name):
                    if member.size > MAX_METADATA_BYTES:
                        raise DistributionError("The metadata file is unreasonably large.", code="metadata")
                    extracted = archive.extractfile(member)
                    metadata_by_name[member.name] = extracted.read() if extracted else b""
    except DistributionError:
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise DistributionError(
            f"The source distribution is not a valid .tar.gz archive ({exc}).", code="corrupt"
        ) from exc
    if not names:
        raise DistributionError("The source distribution is an empty archive.", code="corrupt")
    return metadata_by_name.get(_metadata_member(names, name), b"")


def _check_metadata(raw: bytes, name: DistributionName) -> None:
    what = "METADATA" if name.kind == "wheel" else "PKG-INFO"
    message = BytesParser(policy=compat32).parsebytes(raw, headersonly=True)
    meta_name = (message.get("Name") or "").strip()
    meta_version = (message.get("Version") or "").strip()
    if not meta_name or not meta_version:
        raise DistributionError(f"The {what} file has no Name or no Version.", code="metadata")
    if canonicalize_name(meta_name) != name.project:
        raise DistributionError(
            f"The {what} names the project {meta_name!r}, but the file name says {name.project!r}.",
            code="metadata-mismatch",
        )
    try:
        same_version = Version(meta_version) == Version(name.version)
    except InvalidVersion:
        same_version = False
    if not same_version:
        raise DistributionError(
            f"The {what} gives version {meta_version!r}, but the file name says {name.version!r}.",
            code="metadata-mismatch",
        )
