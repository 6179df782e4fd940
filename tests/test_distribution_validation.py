"""Distribution validation on real wheels and sdists built in temporary folders."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from packages_ui.testing import build_sdist, build_wheel, build_zip_bomb
from packages_ui.validation import (
    DistributionError,
    Limits,
    file_sha256,
    parse_distribution_filename,
    validate_distribution,
)

LIMITS = Limits(
    max_bytes=2 * 1024 * 1024,
    max_uncompressed_bytes=8 * 1024 * 1024,
    max_entries=50,
    max_compression_ratio=200,
)


def _named(path: Path, filename: str) -> tuple[Path, str]:
    return path, filename


def _raw(tmp: Path, filename: str, data: bytes) -> tuple[Path, str]:
    path = tmp / "upload.bin"
    path.write_bytes(data)
    return path, filename


def _flipped_crc_wheel(tmp: Path) -> tuple[Path, str]:
    path = build_wheel(tmp, "demo-pkg", "1.0", compression=zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    offset = data.index(b'VERSION = "1.0"')
    data[offset] ^= 0xFF  # same length, so the zip still opens; only the CRC no longer matches
    path.write_bytes(bytes(data))
    return path, path.name


def _truncated_wheel(tmp: Path) -> tuple[Path, str]:
    path = build_wheel(tmp, "demo-pkg", "1.0")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path, path.name


def _many_entries_wheel(tmp: Path) -> tuple[Path, str]:
    extra = {f"demo_pkg/m{i}.py": b"x = 1\n" for i in range(60)}
    path = build_wheel(tmp, "demo-pkg", "1.0", extra_files=extra)
    return path, path.name


def _sdist_with_traversal(tmp: Path) -> tuple[Path, str]:
    path = tmp / "demo_pkg-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for member, data in (("demo_pkg-1.0/PKG-INFO", b"Name: demo-pkg\nVersion: 1.0\n\n"), ("../evil.py", b"x")):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path, path.name


def _wheel_without_metadata(tmp: Path) -> tuple[Path, str]:
    path = tmp / "demo_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("demo_pkg/__init__.py", "")
    return path, path.name


def _sdist_without_pkg_info(tmp: Path) -> tuple[Path, str]:
    path = tmp / "demo_pkg-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("demo_pkg-1.0/setup.py")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"#"))
    return path, path.name


def _big_wheel(tmp: Path) -> tuple[Path, str]:
    path = build_wheel(tmp, "demo-pkg", "1.0", payload_bytes=3 * 1024 * 1024)
    return path, path.name


GOOD_CASES = {
    "wheel": (lambda t: _named(p := build_wheel(t, "demo-pkg", "1.0"), p.name), "wheel", "demo-pkg", "1.0"),
    "wheel with build tag": (
        lambda t: _named(build_wheel(t, "demo-pkg", "1.0", filename="demo_pkg-1.0-1-py3-none-any.whl"),
                         "demo_pkg-1.0-1-py3-none-any.whl"),
        "wheel", "demo-pkg", "1.0",
    ),
    "wheel whose metadata spells the name differently": (
        lambda t: _named(p := build_wheel(t, "Demo.Pkg", "2.0.0", meta_name="demo_PKG"), p.name),
        "wheel", "demo-pkg", "2.0.0",
    ),
    "sdist (PEP 625)": (lambda t: _named(p := build_sdist(t, "demo-pkg", "1.0"), p.name), "sdist", "demo-pkg", "1.0"),
    "sdist, older name with hyphens": (
        lambda t: _named(build_sdist(t, "demo-pkg", "1.0", filename="demo-pkg-1.0.tar.gz"), "demo-pkg-1.0.tar.gz"),
        "sdist", "demo-pkg", "1.0",
    ),
    "sdist as .zip": (
        lambda t: _named(p := build_sdist(t, "demo-pkg", "1.0", fmt="zip"), p.name), "sdist", "demo-pkg", "1.0",
    ),
}  # fmt: skip

BAD_CASES = {
    "not a distribution": (lambda t: _raw(t, "notes.txt", b"hello"), "type", "Not a Python distribution"),
    "an egg": (lambda t: _raw(t, "demo-1.0-py3.11.egg", b"PK"), "type", "Not a Python distribution"),
    "wheel name without tags": (lambda t: _raw(t, "demo-1.0.whl", b"PK"), "name", "Not a valid wheel file name"),
    "metadata names another project": (
        lambda t: _named(p := build_wheel(t, "demo-pkg", "1.0", meta_name="other-pkg"), p.name),
        "metadata-mismatch", "names the project 'other-pkg'",
    ),
    "metadata gives another version": (
        lambda t: _named(p := build_wheel(t, "demo-pkg", "1.0", meta_version="1.1"), p.name),
        "metadata-mismatch", "gives version '1.1'",
    ),
    "sdist whose PKG-INFO names another project": (
        lambda t: _named(p := build_sdist(t, "demo-pkg", "1.0", meta_name="other"), p.name),
        "metadata-mismatch", "PKG-INFO names the project 'other'",
    ),
    "corrupt zip": (lambda t: _raw(t, "demo_pkg-1.0-py3-none-any.whl", b"PK\x03\x04" + b"\x00" * 200),
                    "corrupt", "not a valid zip"),
    "truncated wheel": (_truncated_wheel, "corrupt", "not a valid zip"),
    "wheel with a damaged entry (bad CRC)": (_flipped_crc_wheel, "corrupt", "damaged"),
    "zip bomb": (lambda t: _named(build_zip_bomb(t, "bomb-1.0-py3-none-any.whl", megabytes=64),
                                  "bomb-1.0-py3-none-any.whl"), "bomb", "zip bomb"),
    "too many entries": (_many_entries_wheel, "bomb", "entries; the limit is 50"),
    "over the size limit": (_big_wheel, "too-large", "the limit is 2.0"),
    "path traversal": (lambda t: _raw(t, "../../evil-1.0-py3-none-any.whl", b"PK"), "name-path", "contain a path"),
    "backslash path": (lambda t: _raw(t, "..\\evil-1.0-py3-none-any.whl", b"PK"), "name-path", "contain a path"),
    "double dot in name": (lambda t: _raw(t, "evil..-1.0-py3-none-any.whl", b"PK"), "name-path", "'..'"),
    "Cyrillic look-alike letter": (lambda t: _raw(t, "d\u0435mo-1.0-py3-none-any.whl", b"PK"), "name-characters",
                                   "ASCII"),
    "space in name": (lambda t: _raw(t, "demo pkg-1.0.tar.gz", b"x"), "name-characters", "no spaces"),
    "zero-width space": (lambda t: _raw(t, "demo\u200b-1.0-py3-none-any.whl", b"PK"), "name-characters", "ASCII"),
    "empty file": (lambda t: _raw(t, "demo_pkg-1.0-py3-none-any.whl", b""), "empty", "The file is empty"),
    "wheel without METADATA": (_wheel_without_metadata, "metadata", ".dist-info/METADATA"),
    "sdist without PKG-INFO": (_sdist_without_pkg_info, "metadata", "PKG-INFO"),
    "sdist with a ../ member": (_sdist_with_traversal, "corrupt", "unsafe entry"),
    "sdist that is not gzip": (lambda t: _raw(t, "demo_pkg-1.0.tar.gz", b"plain text"), "corrupt",
                               "not a valid .tar.gz"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(GOOD_CASES), ids=list(GOOD_CASES))
def test_validation_accepts_good_distribution(case: str, tmp_path: Path) -> None:
    build, kind, project, version = GOOD_CASES[case]
    path, filename = build(tmp_path)

    result = validate_distribution(path, filename, limits=LIMITS)

    assert (result.kind, result.project, result.version) == (kind, project, version)
    assert result.size == path.stat().st_size
    assert result.sha256 == file_sha256(path)


@pytest.mark.parametrize("case", list(BAD_CASES), ids=list(BAD_CASES))
def test_validation_rejects_bad_input_with_a_clear_message(case: str, tmp_path: Path) -> None:
    build, code, fragment = BAD_CASES[case]
    path, filename = build(tmp_path)

    with pytest.raises(DistributionError) as caught:
        validate_distribution(path, filename, limits=LIMITS)

    assert caught.value.code == code
    assert fragment in caught.value.message


def test_zip_bomb_is_refused_on_compression_ratio_even_under_the_size_cap(tmp_path: Path) -> None:
    limits = Limits(
        max_bytes=LIMITS.max_bytes, max_uncompressed_bytes=10**12, max_entries=50, max_compression_ratio=100
    )
    path = build_zip_bomb(tmp_path, "bomb-1.0-py3-none-any.whl", megabytes=32)

    with pytest.raises(DistributionError) as caught:
        validate_distribution(path, path.name, limits=limits)

    assert caught.value.code == "bomb"


def test_parsed_file_name_is_normalized() -> None:
    name = parse_distribution_filename("Foo.Bar-01.0-py3-none-any.whl")

    assert (name.kind, name.project, name.version) == ("wheel", "foo-bar", "1.0")


def test_validation_uses_the_sha256_the_caller_computed_while_receiving(tmp_path: Path) -> None:
    path = build_wheel(tmp_path, "demo-pkg", "1.0")

    result = validate_distribution(path, path.name, sha256="ab" * 32, limits=LIMITS)

    assert result.sha256 == "ab" * 32
