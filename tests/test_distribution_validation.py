"""Distribution validation on real wheels and sdists: built in temporary folders, the wheels
bundled with Python (ensurepip), files built by pip and setuptools, and files from PyPI."""

from __future__ import annotations

import ensurepip
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from packages_ui.validation import (
    KNOWN_METADATA_VERSIONS,
    DistributionError,
    Limits,
    distribution_identity,
    file_sha256,
    parse_distribution_filename,
    validate_distribution,
)
from tests.bad_distributions import (
    BAD_DISTRIBUTIONS,
    INFO,
    TOP,
    BadDistribution,
    metadata_bytes,
    retar,
    rezip,
    sdist,
    tar_member,
    wheel,
)
from tests.builders import build_sdist, build_wheel, build_zip_bomb

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
    "corrupt zip": (lambda t: _raw(t, "demo_pkg-1.0-py3-none-any.whl", b"PK\x03\x04" + b"\x00" * 200),
                    "not-zip", "not a valid zip"),
    "truncated wheel": (_truncated_wheel, "not-zip", "not a valid zip"),
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
    "wheel that is only a module": (_wheel_without_metadata, "no-dist-info", "no .dist-info directory"),
    "sdist of a folder without PKG-INFO": (_sdist_without_pkg_info, "no-pkg-info", "PKG-INFO"),
    "sdist with a ../ member at the top": (_sdist_with_traversal, "unsafe-path", "unsafe path: '../evil.py'"),
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


@pytest.mark.parametrize("bad", BAD_DISTRIBUTIONS, ids=[bad.id for bad in BAD_DISTRIBUTIONS])
def test_validation_refuses_each_bad_upload_of_the_shared_table(bad: BadDistribution, tmp_path: Path) -> None:
    path = tmp_path / bad.filename
    path.write_bytes(bad.build())

    with pytest.raises(DistributionError) as caught:
        validate_distribution(path, bad.filename, limits=Limits.from_settings())

    assert (caught.value.code, bad.message in caught.value.message) == (bad.code, True), caught.value.message


def test_bombs_in_the_shared_table_stay_small_on_disk() -> None:
    sizes = {bad.id: len(bad.build()) for bad in BAD_DISTRIBUTIONS if bad.code == "bomb"}

    assert sizes and max(sizes.values()) < 200_000, sizes


@pytest.mark.parametrize("data", [wheel, sdist], ids=["wheel", "sdist"])
def test_the_files_the_bad_table_starts_from_are_accepted(data, tmp_path: Path) -> None:
    filename = "demo_pkg-1.0-py3-none-any.whl" if data is wheel else "demo_pkg-1.0.tar.gz"
    path = tmp_path / filename
    path.write_bytes(data())

    assert validate_distribution(path, filename, limits=LIMITS).project == "demo-pkg"


def _write(tmp: Path, filename: str, data: bytes) -> tuple[Path, str]:
    path = tmp / filename
    path.write_bytes(data)
    return path, filename


MORE_GOOD_CASES = {
    **{
        f"Metadata-Version {known}": lambda t, known=known: _write(
            t, "demo_pkg-1.0-py3-none-any.whl",
            rezip(wheel(), replace={f"{INFO}/METADATA": metadata_bytes(metadata_version=known)}),
        )
        for known in KNOWN_METADATA_VERSIONS
    },
    "Wheel-Version 1.9 (pip warns, installs)": lambda t: _write(
        t, "demo_pkg-1.0-py3-none-any.whl",
        rezip(wheel(), replace={f"{INFO}/WHEEL": b"Wheel-Version: 1.9\nTag: py3-none-any\n"}),
    ),
    "wheel whose .dist-info spells the version longer": lambda t: _write(
        t, "demo_pkg-1.0-py3-none-any.whl", rezip(wheel(), rename=(f"{INFO}/", "Demo.Pkg-1.0.0.dist-info/")),
    ),
    "sdist with links that stay in its folder": lambda t: _write(
        t, "demo_pkg-1.0.tar.gz",
        retar(sdist(), add=(
            (tar_member(f"{TOP}/docs/README", kind=tarfile.SYMTYPE, linkname="../PKG-INFO"), b""),
            (tar_member(f"{TOP}/COPY", kind=tarfile.LNKTYPE, linkname=f"{TOP}/PKG-INFO"), b""),
        )),
    ),
    "sdist with folder entries": lambda t: _write(
        t, "demo_pkg-1.0.tar.gz",
        retar(sdist(), add=((tar_member(TOP, kind=tarfile.DIRTYPE), b""),
                            (tar_member(f"{TOP}/src", kind=tarfile.DIRTYPE), b""))),
    ),
    "sdist with a long path in a pax header": lambda t: _write(
        t, "demo_pkg-1.0.tar.gz",
        retar(sdist(), add=((tar_member(f"{TOP}/{'nested/' * 40}module_with_a_long_name.py"), b"x = 1\n"),)),
    ),
    "legacy sdist whose folder keeps the project's spelling": lambda t: _write(
        t, "Demo.Pkg-1.0.tar.gz", retar(sdist(), rename=(f"{TOP}/", "Demo.Pkg-1.0/")),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(MORE_GOOD_CASES), ids=list(MORE_GOOD_CASES))
def test_validation_accepts_what_pip_installs(case: str, tmp_path: Path) -> None:
    path, filename = MORE_GOOD_CASES[case](tmp_path)

    result = validate_distribution(path, filename, limits=LIMITS)

    assert (result.project, result.version) == ("demo-pkg", "1.0")


def test_validation_returns_the_wheels_metadata_bytes_and_requires_python(tmp_path: Path) -> None:
    metadata = metadata_bytes("Requires-Python: >=3.9, !=3.10.*\n").replace(b"\n", b"\r\n")
    path, filename = _write(tmp_path, "demo_pkg-1.0-py3-none-any.whl",
                            rezip(wheel(), replace={f"{INFO}/METADATA": metadata}))  # fmt: skip

    result = validate_distribution(path, filename, limits=LIMITS)

    assert (result.metadata, result.requires_python) == (metadata, ">=3.9, !=3.10.*")


def test_validation_reads_requires_python_of_an_sdist_and_serves_no_metadata_file_for_it(tmp_path: Path) -> None:
    pkg_info = (tar_member(f"{TOP}/PKG-INFO"), metadata_bytes("Requires-Python: >=3.8\n"))
    path, filename = _write(tmp_path, "demo_pkg-1.0.tar.gz", retar(sdist(), drop=(f"{TOP}/PKG-INFO",), add=(pkg_info,)))

    result = validate_distribution(path, filename, limits=LIMITS)

    assert (result.metadata, result.requires_python, result.identity) == (None, ">=3.8", "sdist:demo-pkg:1")


def test_a_wheel_without_requires_python_has_none(tmp_path: Path) -> None:
    path = build_wheel(tmp_path, "demo-pkg", "1.0")

    assert validate_distribution(path, path.name, limits=LIMITS).requires_python is None


def _zip_member(path: Path, suffix: str) -> bytes:
    with zipfile.ZipFile(path) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith(suffix)))


def _assert_accepted_as_published(path: Path) -> None:
    result = validate_distribution(path, path.name)

    assert result.identity == distribution_identity(path.name)
    assert result.sha256 == file_sha256(path)
    if result.kind == "wheel":
        metadata = _zip_member(path, ".dist-info/METADATA")
        assert result.metadata == metadata
        requires = [line for line in metadata.decode().splitlines() if line.startswith("Requires-Python:")]
        assert result.requires_python == (requires[0].split(":", 1)[1].strip() if requires else None)


BUNDLED_WHEELS = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("*.whl"))


@pytest.mark.parametrize("path", BUNDLED_WHEELS, ids=[p.name for p in BUNDLED_WHEELS])
def test_validation_accepts_the_real_wheels_python_ships(path: Path) -> None:
    _assert_accepted_as_published(path)


def _run(*args: str, cwd: Path | None = None) -> None:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


@pytest.mark.e2e
def test_validation_accepts_a_wheel_built_by_pip_and_an_sdist_built_by_setuptools(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "tiny_demo").mkdir(parents=True)
    (project / "tiny_demo" / "__init__.py").write_text("VALUE = 1\n")
    (project / "setup.py").write_text(
        "from setuptools import setup\n"
        "setup(name='Tiny.Demo', version='0.1.0', packages=['tiny_demo'], python_requires='>=3.8')\n"
    )
    out = tmp_path / "dist"
    # pip builds in an isolated environment (setuptools and wheel from PyPI), as a user's pip would.
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(project))
    _run(sys.executable, "setup.py", "--quiet", "sdist", "--dist-dir", str(out), cwd=project)

    built = sorted(out.iterdir())
    assert [p.suffix for p in built] == [".gz", ".whl"], built
    for path in built:
        _assert_accepted_as_published(path)
    assert validate_distribution(built[0], built[0].name).requires_python == ">=3.8"


@pytest.mark.e2e
def test_validation_accepts_real_files_from_pypi(tmp_path: Path) -> None:
    # six 1.10.0's wheel says Metadata-Version 2.0 (bdist_wheel of its time); packaging 24.2's
    # is built by flit with Requires-Python; six 1.16.0's sdist is a classic setuptools one.
    pip = (sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(tmp_path))
    _run(*pip, "--only-binary", ":all:", "six==1.10.0", "packaging==24.2")
    _run(*pip, "--no-binary", ":all:", "six==1.16.0")

    downloaded = sorted(tmp_path.iterdir())
    assert [p.name for p in downloaded] == [
        "packaging-24.2-py3-none-any.whl", "six-1.10.0-py2.py3-none-any.whl", "six-1.16.0.tar.gz",
    ]  # fmt: skip
    for path in downloaded:
        _assert_accepted_as_published(path)


SAME_FILE = [
    ("Foo_Bar-1.0-py3-none-any.whl", "foo_bar-1.0-py3-none-any.whl"),
    ("foo.bar-1.0-py3-none-any.whl", "foo_bar-1.0-py3-none-any.whl"),
    ("goodpkg-1.0.0-py3-none-any.whl", "goodpkg-1.0-py3-none-any.whl"),
    ("goodpkg-0!1.0-py3-none-any.whl", "goodpkg-1.0-py3-none-any.whl"),
    ("goodpkg-1.0c1-py3-none-any.whl", "goodpkg-1.0rc1-py3-none-any.whl"),
    ("six-1.16.0-py3.py2-none-any.whl", "six-1.16.0-py2.py3-none-any.whl"),
    ("demo-1.0-PY3-NONE-ANY.whl", "demo-1.0-py3-none-any.whl"),
    ("demo-1.0-01-py3-none-any.whl", "demo-1.0-1-py3-none-any.whl"),
    ("demo-1.0.tar.gz", "demo-1.0.zip"),
    ("Demo.Pkg-1.0.0.tar.gz", "demo_pkg-1.0.tar.gz"),
    ("demo-1.0c1.tar.gz", "demo-1.0rc1.tar.gz"),
]
DIFFERENT_FILES = [
    ("demo-1.0-py3-none-any.whl", "demo-1.0.tar.gz"),
    ("demo-1.0-py3-none-any.whl", "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"),
    ("demo-1.0-py3-none-any.whl", "demo-1.0-py2.py3-none-any.whl"),
    ("demo-1.0-py3-none-any.whl", "demo-1.0-1-py3-none-any.whl"),
    ("demo-1.0-1-py3-none-any.whl", "demo-1.0-2-py3-none-any.whl"),
    ("demo-1.0-py3-none-any.whl", "demo-1.0.post1-py3-none-any.whl"),
    ("demo-1.0-py3-none-any.whl", "demo-1.0+local-py3-none-any.whl"),
    ("demo-1.0-py3-none-any.whl", "demo2-1.0-py3-none-any.whl"),
    ("demo-1.0.tar.gz", "demo-1.1.tar.gz"),
]


@pytest.mark.parametrize(("first", "second"), SAME_FILE, ids=[f"{a} = {b}" for a, b in SAME_FILE])
def test_file_names_spelt_differently_have_one_identity(first: str, second: str) -> None:
    assert distribution_identity(first) == distribution_identity(second)


@pytest.mark.parametrize(("first", "second"), DIFFERENT_FILES, ids=[f"{a} != {b}" for a, b in DIFFERENT_FILES])
def test_different_files_have_different_identities(first: str, second: str) -> None:
    assert distribution_identity(first) != distribution_identity(second)


def test_identity_spells_out_project_version_build_tag_and_tags() -> None:
    assert distribution_identity("Foo_Bar-1.0.0-1-py3.py2-none-any.whl") == "wheel:foo-bar:1:1:py2.py3-none-any"
    assert distribution_identity("Foo_Bar-2.0a1.tar.gz") == "sdist:foo-bar:2a1"


def test_identity_of_a_name_that_is_no_distribution_is_refused() -> None:
    with pytest.raises(DistributionError):
        distribution_identity("notes.txt")


@pytest.mark.parametrize("case", list(GOOD_CASES), ids=list(GOOD_CASES))
def test_validated_identity_is_the_file_names(case: str, tmp_path: Path) -> None:
    path, filename = GOOD_CASES[case][0](tmp_path)

    assert validate_distribution(path, filename, limits=LIMITS).identity == distribution_identity(filename)


def test_metadata_with_a_non_ascii_name_is_checked_not_crashed_on(tmp_path) -> None:
    wheel = build_wheel(tmp_path, "demo-pkg", "1.0", meta_name="d\u00e9mo")

    with pytest.raises(DistributionError) as refused:
        validate_distribution(wheel, wheel.name)

    assert "names the project 'd\u00e9mo'" in refused.value.message
