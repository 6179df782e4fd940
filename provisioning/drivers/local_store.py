"""The local share store: an index's three shares are three folders on this machine, under
LOCAL_DRIVER_DATA_DIR/<id>-<name>/shares/ (the index's folder, which the local runtime also uses
for its pid files and logs)."""

from __future__ import annotations

import contextlib
import os
import stat
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from django.conf import settings

from provisioning.drivers.base import DriverError, ShareFileMissing
from provisioning.drivers.store import ShareFile, ShareStore, check_share_path
from provisioning.spec import IndexSpec

TEMP_PREFIX = ".upload-"
CHUNK = 1024 * 1024


def _copy(source: IO[bytes], temp: Path, size: int, path: str) -> None:
    written = 0
    with open(temp, "wb") as out:
        while chunk := source.read(CHUNK):
            out.write(chunk)
            written += len(chunk)
    if written != size:
        raise DriverError(f"Expected {size} bytes for {path}, got {written}.", permanent=True)


def _link_whole_file(local: Path, temp: Path, size: int) -> bool:
    """Hard-link `local` as `temp` when it is a regular file of `size` bytes on the same file
    system. False when that is not possible."""
    try:
        info = os.stat(local)
        if info.st_size != size or not stat.S_ISREG(info.st_mode):
            return False
        os.link(local, temp)
    except OSError:  # another file system (EXDEV), or no hard links there: copy instead
        return False
    return True


class LocalShareStore(ShareStore):
    name = "local"

    # Read on every use, not at construction: the store instance lives as long as the process.
    @property
    def data_dir(self) -> Path:
        return Path(settings.LOCAL_DRIVER_DATA_DIR)

    def index_dir(self, index_id: int, name: str) -> Path:
        """The index's own folder: its shares, and the runtime's pid files and logs."""
        return self.data_dir / f"{index_id}-{name}"

    def share_dir(self, spec: IndexSpec, share: str) -> Path:
        return self.index_dir(spec.index_id, spec.name) / "shares" / share

    def _share_path(self, spec: IndexSpec, share: str, path: str) -> Path:
        return self.share_dir(spec, share).joinpath(*check_share_path(share, path))

    def write_file(self, spec: IndexSpec, share: str, path: str, source: IO[bytes], *, size: int) -> None:
        self._write_via_temp(spec, share, path, lambda temp: _copy(source, temp, size, path))

    def write_local_file(self, spec: IndexSpec, share: str, path: str, local: Path, *, size: int) -> None:
        """Hard-link the caller's file when it is on the same file system (no second copy of
        its bytes; the caller deletes its own name afterwards), else copy it."""

        def link_or_copy(temp: Path) -> None:
            if not _link_whole_file(local, temp, size):
                with open(local, "rb") as source:
                    _copy(source, temp, size, path)

        self._write_via_temp(spec, share, path, link_or_copy)

    def _write_via_temp(self, spec: IndexSpec, share: str, path: str, fill: Callable[[Path], None]) -> None:
        """`fill` writes the file under a temporary name in the target folder, which is then
        renamed over the target, so a half-written file is never visible."""
        target = self._share_path(spec, share, path)
        temp = target.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fill(temp)
            os.chmod(temp, 0o644)
            os.replace(temp, target)
        except OSError as exc:  # read-only or immutable folder, full disk
            raise DriverError(f"The {share} share cannot be written: {exc.strerror or exc}.", permanent=True) from exc
        finally:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)

    def read_file(self, spec: IndexSpec, share: str, path: str) -> Iterator[bytes]:
        target = self._share_path(spec, share, path)
        try:
            handle = open(target, "rb")  # noqa: SIM115 - closed by the generator
        except FileNotFoundError as exc:
            raise ShareFileMissing(f"{path} does not exist in {share}.") from exc

        def chunks() -> Iterator[bytes]:
            with handle:
                while chunk := handle.read(CHUNK):
                    yield chunk

        return chunks()

    def list_files(self, spec: IndexSpec, share: str, prefix: str = "") -> list[ShareFile]:
        root = self.share_dir(spec, share)
        base = self._share_path(spec, share, prefix) if prefix else root
        found: list[ShareFile] = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith(TEMP_PREFIX):
                    continue
                full = Path(dirpath) / name
                with contextlib.suppress(FileNotFoundError):
                    info = full.stat()
                    found.append(
                        ShareFile(
                            path=full.relative_to(root).as_posix(),
                            size=info.st_size,
                            modified=datetime.fromtimestamp(info.st_mtime, tz=UTC),
                        )
                    )
        return sorted(found, key=lambda f: f.path)

    def delete_file(self, spec: IndexSpec, share: str, path: str) -> None:
        try:
            self._share_path(spec, share, path).unlink(missing_ok=True)
        except OSError as exc:
            raise DriverError(f"{path} cannot be deleted from {share}: {exc.strerror or exc}.", permanent=True) from exc
