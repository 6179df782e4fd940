"""The Azure share store: an index's three shares are Azure File shares in its storage account,
reached through the File service with the account's key (`azure_clients`).

Writes go to a temporary name in ranges, in parallel, and are renamed over the target when
complete, so a reader never sees half a file; deletes of missing files succeed.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from typing import IO, Any, TypeVar

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.fileshare import ShareClient
from django.conf import settings

from provisioning.drivers.azure_clients import AzureClients, azure_message, error_code, to_driver_error
from provisioning.drivers.base import ShareFileMissing
from provisioning.drivers.store import ShareFile, ShareStore, check_share_path
from provisioning.spec import IndexSpec

T = TypeVar("T")
# Uploads are written as "<dir>/.portal-upload-<uuid>-<name>" and renamed when complete.
TEMP_PREFIX = ".portal-upload-"


class AzureShareStore(ShareStore):
    name = "azure"

    def __init__(self, clients: AzureClients) -> None:
        self.clients = clients

    def _share(self, spec: IndexSpec, share: str) -> ShareClient:
        return self.clients.account(spec)[1].get_share_client(share)

    def _file_call(self, spec: IndexSpec, doing: str, func: Callable[[ShareClient], T], share: str) -> T:
        """Run a File service call; a rotated key (403) is fetched again once."""
        for attempt in range(2):
            try:
                return func(self._share(spec, share))
            except HttpResponseError as exc:
                if attempt == 0 and error_code(exc) == "AuthenticationFailed":
                    self.clients.forget_key(spec)
                    continue
                raise to_driver_error(exc, doing) from exc
            except AzureError as exc:
                raise to_driver_error(exc, doing) from exc
        raise AssertionError("unreachable")

    @staticmethod
    def _make_parents(share: ShareClient, path: str) -> None:
        parts = path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            with contextlib.suppress(ResourceExistsError):
                share.create_directory("/".join(parts[:depth]))

    def _upload(self, share: ShareClient, path: str, source: IO[bytes], size: int, *, temporary: bool = True) -> None:
        """Write under a temporary name in ranges, in parallel, then rename over `path`.
        Raises the SDK's errors (the caller turns them into DriverError)."""
        directory, _, base = path.rpartition("/")
        target = f"{directory}/{TEMP_PREFIX}{uuid.uuid4().hex}-{base}".lstrip("/") if temporary else path
        file_client = share.get_file_client(target)
        concurrency = settings.AZURE_FILE_MAX_CONCURRENCY
        try:
            try:
                file_client.upload_file(source, length=size, max_concurrency=concurrency)
            except ResourceNotFoundError as exc:
                if error_code(exc) != "ParentNotFound":
                    raise
                # Parents are created only when missing: most uploads go to existing folders.
                self._make_parents(share, path)
                file_client.upload_file(source, length=size, max_concurrency=concurrency)
            if temporary:
                file_client.rename_file(path, overwrite=True)
        except AzureError:
            if temporary:
                with contextlib.suppress(AzureError):
                    file_client.delete_file()
            raise

    def write_file(self, spec: IndexSpec, share: str, path: str, source: IO[bytes], *, size: int) -> None:
        """Stream `size` bytes into share/path via a temporary name and a rename. Raises DriverError."""
        check_share_path(share, path)
        start = source.tell()

        def upload(client: ShareClient) -> None:
            source.seek(start)  # a retry (rotated key) starts again from the first byte
            self._upload(client, path, source, size)

        self._file_call(spec, f"Writing {share}/{path}", upload, share)

    def read_file(self, spec: IndexSpec, share: str, path: str) -> Iterator[bytes]:
        """The file's bytes in chunks; ShareFileMissing when it does not exist."""
        check_share_path(share, path)
        doing = f"Reading {share}/{path}"

        def download(client: ShareClient) -> Any:  # a StorageStreamDownloader (not exported)
            try:
                return client.get_file_client(path).download_file(max_concurrency=settings.AZURE_FILE_MAX_CONCURRENCY)
            except ResourceNotFoundError as exc:  # the file, its folder or the share (404)
                raise ShareFileMissing(f"{doing}: {azure_message(exc)}") from exc

        downloader = self._file_call(spec, doing, download, share)

        def chunks() -> Iterator[bytes]:
            try:
                yield from downloader.chunks()
            except AzureError as exc:  # a range that fails after its retries, mid-stream
                raise to_driver_error(exc, doing) from exc

        return chunks()

    def list_files(self, spec: IndexSpec, share: str, prefix: str = "") -> list[ShareFile]:
        """Every file whose path starts with `prefix`, recursively, without temporary uploads."""
        prefix = prefix.lstrip("/")
        start = prefix.rpartition("/")[0]

        def walk(client: ShareClient) -> list[ShareFile]:
            found: list[ShareFile] = []
            pending = [start]
            while pending:
                directory = pending.pop()
                try:
                    entries = list(
                        client.list_directories_and_files(directory_name=directory or None, include=["timestamps"])
                    )
                except ResourceNotFoundError:
                    continue
                for entry in entries:
                    path = f"{directory}/{entry['name']}" if directory else entry["name"]
                    if entry.get("is_directory"):
                        if path.startswith(prefix) or prefix.startswith(path + "/"):
                            pending.append(path)
                    elif path.startswith(prefix) and not entry["name"].startswith(TEMP_PREFIX):
                        found.append(
                            ShareFile(path=path, size=entry.get("size") or 0, modified=entry.get("last_modified"))
                        )
            return sorted(found, key=lambda f: f.path)

        return self._file_call(spec, f"Listing {share}/{prefix}", walk, share)

    def delete_file(self, spec: IndexSpec, share: str, path: str) -> None:
        """Delete one file; a file that is already gone is fine."""
        check_share_path(share, path)

        def delete(client: ShareClient) -> None:
            with contextlib.suppress(ResourceNotFoundError):
                client.get_file_client(path).delete_file()

        self._file_call(spec, f"Deleting {share}/{path}", delete, share)
