"""Bad uploads as one table, for every path a file can take into an index (validation itself,
the drag-and-drop page, the twine upload API): parametrize over BAD_DISTRIBUTIONS and check
the refusal carries `message`.

Each entry is a good wheel or sdist (from tests.builders) with exactly one thing wrong,
written with real zipfile/tarfile code. All are refused under the settings' default limits;
the zip bombs are small on disk (tens of KB) and unpack past the ratio limit.
"""

from __future__ import annotations

import io
import stat
import tarfile
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.builders import build_sdist, build_wheel, build_zip_bomb, metadata_text

WHEEL = "demo_pkg-1.0-py3-none-any.whl"
INFO = "demo_pkg-1.0.dist-info"
SDIST = "demo_pkg-1.0.tar.gz"
TOP = "demo_pkg-1.0"
# Over validation's 16 MiB ratio exemption, deflated to ~25 KB: a ratio near 1000 (limit 200).
BOMB_MEGABYTES = 24


@dataclass(frozen=True)
class BadDistribution:
    id: str
    filename: str
    build: Callable[[], bytes]
    message: str  # a fragment of the refusal the uploader sees
    code: str  # DistributionError.code


def _built(builder: Callable[..., Path], *args: object, **kwargs: object) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return builder(Path(folder), *args, **kwargs).read_bytes()


def wheel(**kwargs: object) -> bytes:
    """A good demo-pkg 1.0 wheel; keyword arguments as tests.builders.build_wheel."""
    return _built(build_wheel, "demo-pkg", "1.0", **kwargs)


def sdist(**kwargs: object) -> bytes:
    """A good demo-pkg 1.0 sdist; keyword arguments as tests.builders.build_sdist."""
    return _built(build_sdist, "demo-pkg", "1.0", **kwargs)


def symlink_info(name: str) -> zipfile.ZipInfo:
    """A zip entry that unzip and Python's zipfile-based installers would create as a symlink."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix: the high 16 bits of external_attr are st_mode
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def rezip(
    data: bytes,
    *,
    drop: tuple[str, ...] = (),
    rename: tuple[str, str] | None = None,
    replace: dict[str, bytes] | None = None,
    add: tuple[tuple[zipfile.ZipInfo | str, bytes], ...] = (),
) -> bytes:
    """`data` (a zip) rewritten: entries dropped, a path prefix renamed, contents replaced, entries added."""
    replace = replace or {}
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if info.filename in drop:
                continue
            name = info.filename
            if rename and name.startswith(rename[0]):
                name = rename[1] + name[len(rename[0]) :]
            target.writestr(name, replace.get(info.filename, source.read(info)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate case
            for entry, content in add:
                target.writestr(entry, content)
    return out.getvalue()


def tar_member(name: str, *, kind: bytes = tarfile.REGTYPE, linkname: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, size
    return info


def retar(
    data: bytes,
    *,
    drop: tuple[str, ...] = (),
    rename: tuple[str, str] | None = None,
    add: tuple[tuple[tarfile.TarInfo, bytes], ...] = (),
) -> bytes:
    """`data` (a .tar.gz) rewritten: members dropped, a path prefix renamed, members added."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as source,
        tarfile.open(fileobj=out, mode="w:gz") as target,
    ):
        for member in source.getmembers():
            if member.name in drop:
                continue
            content = source.extractfile(member)
            if rename and member.name.startswith(rename[0]):
                member.name = rename[1] + member.name[len(rename[0]) :]
            target.addfile(member, content)
        for info, content in add:
            info.size = len(content) if info.isfile() else 0
            target.addfile(info, io.BytesIO(content))
    return out.getvalue()


def metadata_bytes(extra: str = "", *, metadata_version: str = "2.1") -> bytes:
    """demo-pkg 1.0's METADATA / PKG-INFO with `extra` header lines and another Metadata-Version."""
    text = metadata_text("demo-pkg", "1.0").replace("Metadata-Version: 2.1", f"Metadata-Version: {metadata_version}")
    return text.replace("Summary:", f"{extra}Summary:").encode()


def _tar_bomb() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=9) as archive:
        archive.addfile(tar_member(f"{TOP}/PKG-INFO", size=len(metadata_bytes())), io.BytesIO(metadata_bytes()))
        archive.addfile(
            tar_member(f"{TOP}/zeros.bin", size=BOMB_MEGABYTES << 20), io.BytesIO(bytes(BOMB_MEGABYTES << 20))
        )
    return out.getvalue()


def _tar_header_bomb() -> bytes:
    """The bytes hide in a GNU long-name header, which no member's declared size counts."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.GNU_FORMAT, compresslevel=9) as archive:
        archive.addfile(tar_member(f"{TOP}/{'a' * (BOMB_MEGABYTES << 20)}"), io.BytesIO(b""))
    return out.getvalue()


def _tar_slow_header() -> bytes:
    """A pax header of digits: older Pythons' tarfile parses it in quadratic time (CVE-2024-6232)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        info = tar_member(f"{TOP}/PKG-INFO", size=len(metadata_bytes()))
        info.pax_headers = {"comment": "0" * 60_000}
        archive.addfile(info, io.BytesIO(metadata_bytes()))
    return out.getvalue()


BAD_DISTRIBUTIONS: list[BadDistribution] = [
    # Wheels: what pip's installer needs, and what the file name promises.
    BadDistribution("wheel-metadata-names-another-project", WHEEL, lambda: wheel(meta_name="other-pkg"),
                    "METADATA names the project 'other-pkg'", "metadata-mismatch"),
    BadDistribution("wheel-metadata-gives-another-version", WHEEL, lambda: wheel(meta_version="1.1"),
                    "METADATA gives version '1.1'", "metadata-mismatch"),
    BadDistribution("wheel-not-a-zip", WHEEL, lambda: b"This is a text file, not a zip archive.\n" * 20,
                    "not a valid zip archive", "not-zip"),
    BadDistribution("wheel-zip-bomb", "bomb-1.0-py3-none-any.whl",
                    lambda: _built(build_zip_bomb, "bomb-1.0-py3-none-any.whl", megabytes=BOMB_MEGABYTES),
                    "zip bomb", "bomb"),
    BadDistribution("wheel-without-record", WHEEL, lambda: rezip(wheel(), drop=(f"{INFO}/RECORD",)),
                    f"no {INFO}/RECORD file", "wheel-record"),
    BadDistribution("wheel-without-wheel-file", WHEEL, lambda: rezip(wheel(), drop=(f"{INFO}/WHEEL",)),
                    f"no {INFO}/WHEEL file", "wheel-wheel"),
    BadDistribution("wheel-without-metadata", WHEEL, lambda: rezip(wheel(), drop=(f"{INFO}/METADATA",)),
                    f"no {INFO}/METADATA file", "wheel-metadata"),
    BadDistribution("wheel-without-dist-info", WHEEL,
                    lambda: rezip(wheel(), drop=(f"{INFO}/METADATA", f"{INFO}/WHEEL", f"{INFO}/RECORD")),
                    "no .dist-info directory", "no-dist-info"),
    BadDistribution("wheel-dist-info-for-another-project", WHEEL,
                    lambda: rezip(wheel(), rename=(f"{INFO}/", "other_pkg-1.0.dist-info/")),
                    ".dist-info directory is other_pkg-1.0.dist-info/", "dist-info-name"),
    BadDistribution("wheel-dist-info-for-another-version", WHEEL,
                    lambda: rezip(wheel(), rename=(f"{INFO}/", "demo_pkg-0.9.dist-info/")),
                    ".dist-info directory is demo_pkg-0.9.dist-info/", "dist-info-name"),
    BadDistribution("wheel-with-two-dist-info", WHEEL,
                    lambda: rezip(wheel(), add=(("demo_pkg-0.9.dist-info/METADATA", metadata_bytes()),)),
                    "2 .dist-info directories", "many-dist-info"),
    BadDistribution("wheel-metadata-version-banana", WHEEL,
                    lambda: rezip(wheel(), replace={f"{INFO}/METADATA": metadata_bytes(metadata_version="banana")}),
                    "Metadata-Version 'banana'", "metadata-version"),
    BadDistribution("wheel-format-version-2", WHEEL,
                    lambda: rezip(wheel(), replace={f"{INFO}/WHEEL": b"Wheel-Version: 2.0\nTag: py3-none-any\n"}),
                    "Wheel-Version '2.0'", "wheel-version"),
    BadDistribution("wheel-invalid-requires-python", WHEEL,
                    lambda: rezip(wheel(), replace={f"{INFO}/METADATA": metadata_bytes("Requires-Python: 3+\n")}),
                    "invalid Requires-Python", "requires-python"),
    BadDistribution("wheel-symlink-to-etc-passwd", WHEEL,
                    lambda: rezip(wheel(), add=((symlink_info("demo_pkg/passwd"), b"../../../../etc/passwd"),)),
                    "'demo_pkg/passwd' -> '../../../../etc/passwd'", "link"),
    BadDistribution("wheel-absolute-path-entry", WHEEL,
                    lambda: rezip(wheel(), add=(("/etc/cron.d/evil", b"* * * * * root id\n"),)),
                    "unsafe path: '/etc/cron.d/evil'", "unsafe-path"),
    BadDistribution("wheel-dotdot-entry", WHEEL,
                    lambda: rezip(wheel(), add=(("demo_pkg/../../evil.pth", b"import os\n"),)),
                    "unsafe path: 'demo_pkg/../../evil.pth'", "unsafe-path"),
    BadDistribution("wheel-backslash-entry", WHEEL,
                    lambda: rezip(wheel(), add=(("demo_pkg\\..\\..\\evil.pth", b"import os\n"),)),
                    "unsafe path", "unsafe-path"),
    BadDistribution("wheel-drive-letter-entry", WHEEL,
                    lambda: rezip(wheel(), add=(("C:/Windows/evil.dll", b"MZ"),)),
                    "unsafe path: 'C:/Windows/evil.dll'", "unsafe-path"),
    BadDistribution("wheel-duplicate-entry", WHEEL,
                    lambda: rezip(wheel(), add=(("demo_pkg/__init__.py", b"import os\n"),)),
                    "'demo_pkg/__init__.py' more than once", "duplicate-entry"),
    # Sdists: one top folder {name}-{version} holding PKG-INFO, nothing that leaves it.
    BadDistribution("sdist-with-two-top-level-folders", SDIST,
                    lambda: retar(sdist(), add=((tar_member("other-1.0/setup.py"), b"import os\n"),)),
                    "2 top-level entries", "sdist-layout"),
    BadDistribution("sdist-top-folder-for-another-project", SDIST,
                    lambda: retar(sdist(), rename=(f"{TOP}/", "other_pkg-1.0/")),
                    "top-level folder is other_pkg-1.0/", "sdist-top-name"),
    BadDistribution("sdist-without-pkg-info", SDIST, lambda: retar(sdist(), drop=(f"{TOP}/PKG-INFO",)),
                    f"no {TOP}/PKG-INFO file", "no-pkg-info"),
    BadDistribution("sdist-pkg-info-names-another-project", SDIST, lambda: sdist(meta_name="other-pkg"),
                    "PKG-INFO names the project 'other-pkg'", "metadata-mismatch"),
    BadDistribution("sdist-metadata-version-banana", SDIST,
                    lambda: retar(sdist(), drop=(f"{TOP}/PKG-INFO",),
                                  add=((tar_member(f"{TOP}/PKG-INFO"), metadata_bytes(metadata_version="banana")),)),
                    "Metadata-Version 'banana'", "metadata-version"),
    BadDistribution("sdist-symlink-escaping", SDIST,
                    lambda: retar(sdist(), add=((tar_member(f"{TOP}/passwd", kind=tarfile.SYMTYPE,
                                                            linkname="../../../../etc/passwd"), b""),)),
                    f"'{TOP}/passwd' -> '../../../../etc/passwd'", "link"),
    BadDistribution("sdist-symlink-to-absolute-path", SDIST,
                    lambda: retar(sdist(), add=((tar_member(f"{TOP}/passwd", kind=tarfile.SYMTYPE,
                                                            linkname="/etc/passwd"), b""),)),
                    "points to an absolute path", "link"),
    BadDistribution("sdist-hard-link-escaping", SDIST,
                    lambda: retar(sdist(), add=((tar_member(f"{TOP}/passwd", kind=tarfile.LNKTYPE,
                                                            linkname="etc/passwd"), b""),)),
                    "points outside the source distribution's folder", "link"),
    BadDistribution("sdist-device-file", SDIST,
                    lambda: retar(sdist(), add=((tar_member(f"{TOP}/disk", kind=tarfile.BLKTYPE), b""),)),
                    "a device or pipe", "special-file"),
    BadDistribution("sdist-dotdot-member", SDIST,
                    lambda: retar(sdist(), add=((tar_member(f"{TOP}/../../evil.pth"), b"import os\n"),)),
                    "unsafe path", "unsafe-path"),
    BadDistribution("sdist-absolute-member", SDIST,
                    lambda: retar(sdist(), add=((tar_member("/etc/cron.d/evil"), b"* * * * * root id\n"),)),
                    "unsafe path: '/etc/cron.d/evil'", "unsafe-path"),
    BadDistribution("sdist-not-gzip", SDIST, lambda: b"This is a text file, not a .tar.gz archive.\n" * 20,
                    "not a valid .tar.gz archive", "not-tar"),
    BadDistribution("sdist-tar-bomb", SDIST, _tar_bomb, "zip bomb", "bomb"),
    BadDistribution("sdist-tar-bomb-in-a-header", SDIST, _tar_header_bomb, "zip bomb", "bomb"),
    BadDistribution("sdist-pax-header-slow-to-parse", SDIST, _tar_slow_header, "extended (pax) tar header",
                    "pax-header"),
    BadDistribution("sdist-zip-without-pkg-info", "demo_pkg-1.0.zip",
                    lambda: rezip(sdist(fmt="zip"), drop=(f"{TOP}/PKG-INFO",)),
                    f"no {TOP}/PKG-INFO file", "no-pkg-info"),
    BadDistribution("sdist-zip-with-symlink", "demo_pkg-1.0.zip",
                    lambda: rezip(sdist(fmt="zip"), add=((symlink_info(f"{TOP}/passwd"), b"../../../../etc/passwd"),)),
                    "may not contain links", "link"),
]  # fmt: skip
