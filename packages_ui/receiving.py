"""Receiving an upload: request body → temporary file on disk, hashed on the way, never whole in
memory. Two ways in: the upload script sends each file as the raw request body (no multipart
parsing, the fastest path), and the plain HTML form posts multipart (handled by an upload
handler that hashes and caps the size while Django writes the temporary file)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.http import HttpRequest, UnreadablePostError
from django.template.defaultfilters import filesizeformat

from packages_ui.validation import CHUNK_SIZE, DistributionError

logger = logging.getLogger(__name__)


@dataclass
class ReceivedFile:
    """A file on local disk waiting to be validated and stored. The receiver deletes it."""

    path: Path
    filename: str
    sha256: str | None = None


def too_large_error() -> DistributionError:
    return DistributionError(
        f"The file is larger than the limit of {filesizeformat(settings.PACKAGES_MAX_UPLOAD_BYTES)}.",
        code="too-large",
    )


class BackgroundHash:
    """sha256 on a second thread. hashlib releases the GIL on large chunks, so hashing overlaps
    with reading the socket and writing the file (about 0.35 s per 500 MB on these machines).
    At most `depth` chunks wait in the queue, so memory stays bounded."""

    def __init__(self, depth: int = 8) -> None:
        self.digest = hashlib.sha256()
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self.thread = threading.Thread(target=self._run, name="upload-hash", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (chunk := self.queue.get()) is not None:
            self.digest.update(chunk)

    def update(self, chunk: bytes) -> None:
        self.queue.put(chunk)

    def close(self) -> None:
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()

    def hexdigest(self) -> str:
        self.close()
        return self.digest.hexdigest()


@contextlib.contextmanager
def receive_raw_body(request: HttpRequest, filename: str) -> Iterator[ReceivedFile]:
    """Stream the request body into a temporary file. Raises DistributionError when the body is
    larger than the limit or shorter than its Content-Length (the client went away halfway);
    the temporary file is removed in every case when the block ends."""
    try:
        expected = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        expected = -1
    if expected > settings.PACKAGES_MAX_UPLOAD_BYTES:
        raise too_large_error()
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - removed in the finally below
        prefix="portal-upload-", suffix=".part", dir=settings.FILE_UPLOAD_TEMP_DIR, delete=False
    )
    path = Path(handle.name)
    digest = BackgroundHash()
    started = time.perf_counter()
    try:
        size = 0
        with handle:
            try:
                while chunk := request.read(CHUNK_SIZE):
                    size += len(chunk)
                    if size > settings.PACKAGES_MAX_UPLOAD_BYTES:
                        raise too_large_error()
                    digest.update(chunk)
                    handle.write(chunk)
            except (OSError, UnreadablePostError):
                expected = max(expected, size + 1)  # the client went away mid-body: reported below
        if expected < 0 or size != expected:
            raise DistributionError(
                f"The upload was interrupted: {size} of {expected} bytes arrived. Nothing was stored.",
                code="interrupted",
            )
        sha256 = digest.hexdigest()
        logger.info("Received %r: %d bytes in %.2f s.", filename, size, time.perf_counter() - started)
        yield ReceivedFile(path=path, filename=filename, sha256=sha256)
    finally:
        digest.close()
        path.unlink(missing_ok=True)


class HashingUploadHandler(TemporaryFileUploadHandler):
    """Django's temporary-file handler that also hashes each file and stops at the size limit,
    so the form path has the same guarantees as the raw-body path.

    A file over the limit is dropped (its temporary file deleted, the rest of its bytes
    skipped) and its name recorded in `too_large`; the files after it are still received."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.too_large: list[str] = []

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.digest = hashlib.sha256()
        self.received = 0
        self.skipping = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        if self.skipping:
            return None
        self.received += len(raw_data)
        if self.received > settings.PACKAGES_MAX_UPLOAD_BYTES:
            self.skipping = True
            self.too_large.append(self.file_name or "")
            self.file.close()  # a TemporaryUploadedFile: closing deletes it
            return None
        self.digest.update(raw_data)
        return super().receive_data_chunk(raw_data, start)

    def file_complete(self, file_size: int) -> TemporaryUploadedFile | None:
        if self.skipping:
            return None  # not added to request.FILES; reported through `too_large`
        uploaded = super().file_complete(file_size)
        uploaded.sha256 = self.digest.hexdigest()
        return uploaded


@contextlib.contextmanager
def received_from_form(uploaded: TemporaryUploadedFile) -> Iterator[ReceivedFile]:
    """A multipart upload already on disk (HashingUploadHandler) as a ReceivedFile."""
    try:
        path = Path(uploaded.temporary_file_path())
        # Django has already reduced the name to its last path component.
        yield ReceivedFile(path=path, filename=uploaded.name or "", sha256=getattr(uploaded, "sha256", None))
    finally:
        uploaded.close()
