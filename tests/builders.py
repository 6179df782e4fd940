"""Builders for real wheels and sdists, used by the tests, the browser test and the bench.

They write genuine archives (a wheel pip can install, an sdist with PKG-INFO) so validation
and the index are exercised with the same bytes a user would upload.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import zipfile
from pathlib import Path


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def metadata_text(name: str, version: str, requires_python: str | None = None) -> str:
    requires = f"Requires-Python: {requires_python}\n" if requires_python else ""
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: test package\n{requires}\n"


def build_wheel(
    directory: Path,
    name: str = "demo-pkg",
    version: str = "1.0",
    *,
    filename: str | None = None,
    meta_name: str | None = None,
    meta_version: str | None = None,
    extra_files: dict[str, bytes] | None = None,
    payload_bytes: int = 0,
    compression: int = zipfile.ZIP_DEFLATED,
    tag: str = "py3-none-any",
    requires_python: str | None = None,
) -> Path:
    """A pure-Python wheel installable by pip. `meta_*` let a test lie in METADATA;
    `payload_bytes` adds a stored (uncompressed, random) data file to make a big wheel."""
    dist = name.replace("-", "_").replace(".", "_")
    module = dist.lower()
    filename = filename or f"{dist}-{version}-{tag}.whl"
    info = f"{dist}-{version}.dist-info"
    wheel = f"Wheel-Version: 1.0\nGenerator: portal-tests\nRoot-Is-Purelib: true\nTag: {tag}\n"
    files: dict[str, bytes] = {
        f"{module}/__init__.py": f'VERSION = "{version}"\n'.encode(),
        f"{info}/METADATA": metadata_text(meta_name or name, meta_version or version, requires_python).encode(),
        f"{info}/WHEEL": wheel.encode(),
    }
    files.update(extra_files or {})
    Path(directory).mkdir(parents=True, exist_ok=True)
    path = Path(directory) / filename
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        record = []
        for member, data in files.items():
            archive.writestr(member, data)
            record.append(_record_line(member, data))
        if payload_bytes:
            # Written in chunks with ZIP_STORED so building a 500 MB wheel needs no 500 MB buffer.
            member = f"{module}/payload.bin"
            with archive.open(zipfile.ZipInfo(member), "w", force_zip64=True) as out:
                digest = hashlib.sha256()
                left = payload_bytes
                while left:
                    chunk = os.urandom(min(left, 4 * 1024 * 1024))
                    digest.update(chunk)
                    out.write(chunk)
                    left -= len(chunk)
            b64 = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
            record.append(f"{member},sha256={b64},{payload_bytes}")
        record.append(f"{info}/RECORD,,")
        archive.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


def build_sdist(
    directory: Path,
    name: str = "demo-pkg",
    version: str = "1.0",
    *,
    filename: str | None = None,
    meta_name: str | None = None,
    fmt: str = "tar.gz",
) -> Path:
    """A minimal sdist with PKG-INFO in its top folder (PEP 625 name unless `filename`)."""
    dist = name.replace("-", "_").replace(".", "_").lower()
    top = f"{dist}-{version}"
    filename = filename or f"{top}.{fmt}"
    files = {
        f"{top}/PKG-INFO": metadata_text(meta_name or name, version).encode(),
        f"{top}/pyproject.toml": b'[build-system]\nrequires = ["setuptools"]\n',
    }
    path = Path(directory) / filename
    if fmt == "zip":
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for member, data in files.items():
                archive.writestr(member, data)
    else:
        with tarfile.open(path, "w:gz") as archive:
            for member, data in files.items():
                info = tarfile.TarInfo(member)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return path


def build_zip_bomb(
    directory: Path, filename: str, *, name: str = "bomb", version: str = "1.0", megabytes: int = 64
) -> Path:
    """A wheel-shaped zip whose one data entry is `megabytes` of zeros deflated to a few KB."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    path = Path(directory) / filename
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr(f"{info}/METADATA", metadata_text(name, version))
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        member = zipfile.ZipInfo(f"{dist}/zeros.bin")
        member.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(member, "w", force_zip64=True) as out:
            zeros = bytes(1024 * 1024)
            for _ in range(megabytes):
                out.write(zeros)
    return path
