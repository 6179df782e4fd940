"""The Azure Files data plane (REST, path-style: /{account}/{share}/{path}), verifying SharedKey
signatures with the keys the emulator's ARM side issued."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from urllib.parse import unquote, urlparse
from xml.sax.saxutils import escape

from .http import Request, Response, http_date, new_id
from .state import EmulatorState, FileShare, StorageAccount, StoredFile

MAX_RANGE = 4 * 1024 * 1024
X_MS_VERSION = "2026-10-06"
_SIGNED_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)
_RANGE_RE = re.compile(r"bytes=(\d+)-(\d*)")


def storage_error(status: int, code: str, message: str, *, head: bool = False) -> Response:
    headers = {"x-ms-error-code": code}
    if head:  # HEAD errors carry the code in the header only
        return Response(status, b"", headers)
    body = (
        f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{escape(message)}\n'
        f"RequestId:{new_id()}\nTime:{time.strftime('%Y-%m-%dT%H:%M:%S.0000000Z', time.gmtime())}</Message></Error>"
    ).encode()
    headers["Content-Type"] = "application/xml"
    return Response(status, body, headers)


def _x_ms_orderings(names: list[str]) -> list[list[str]]:
    """The service sorts x-ms-* headers with a collation that ignores hyphens at the first
    level; older clients sorted plainly. Either ordering is accepted."""
    plain = sorted(names)
    collated = sorted(names, key=lambda n: (n.replace("-", ""), n))
    return [plain] if plain == collated else [plain, collated]


def string_to_sign(request: Request, account: str, x_ms_names: list[str]) -> str:
    values = []
    for name in _SIGNED_HEADERS:
        value = request.header(name)
        if name == "content-length" and value == "0":
            value = ""
        values.append(value)
    out = request.method + "\n" + "\n".join(values) + "\n"
    out += "".join(f"{n}:{request.header(n)}\n" for n in x_ms_names)
    out += f"/{account}{request.path}"
    params: list[tuple[str, str]] = []
    for part in request.raw_query.split("&") if request.raw_query else []:
        name, _, value = part.partition("=")
        params.append((unquote(name), value))
    for name, value in sorted(params):
        out += f"\n{name.lower()}:{unquote(value)}"
    return out


class FileService:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def _authenticate(self, request: Request, account: StorageAccount) -> Response | None:
        auth = request.header("authorization")
        head = request.method == "HEAD"
        if not auth.startswith("SharedKey "):
            return storage_error(
                403,
                "NoAuthenticationInformation",
                "Server failed to authenticate the request. Please refer to the information in the www-authenticate "
                "header.",
                head=head,
            )
        name, _, signature = auth[len("SharedKey ") :].partition(":")
        x_ms = [n for n in request.headers if n.startswith("x-ms-")]
        candidates = [string_to_sign(request, account.name, order) for order in _x_ms_orderings(x_ms)]
        for key in account.keys:
            secret = base64.b64decode(key)
            for candidate in candidates:
                expected = base64.b64encode(hmac.new(secret, candidate.encode(), hashlib.sha256).digest()).decode()
                if name == account.name and hmac.compare_digest(expected, signature):
                    return None
        return storage_error(
            403,
            "AuthenticationFailed",
            "Server failed to authenticate the request. Make sure the value of Authorization header is formed "
            "correctly including the signature.",
            head=head,
        )

    def handle(self, request: Request) -> Response:
        response = self._handle(request)
        response.headers.setdefault("x-ms-request-id", new_id())
        response.headers.setdefault("x-ms-version", X_MS_VERSION)
        response.headers.setdefault("Date", http_date())
        if request.method == "HEAD":
            response.head_only = True
        return response

    def _handle(self, request: Request) -> Response:
        head = request.method == "HEAD"
        parts = request.path.lstrip("/").split("/")
        with self.state.lock:
            account = self.state.account(unquote(parts[0])) if parts[0] else None
            if account is None:
                return storage_error(404, "ResourceNotFound", "The specified resource does not exist.", head=head)
            denied = self._authenticate(request, account)
            if denied is not None:
                return denied
            if len(parts) < 2 or not parts[1]:
                return storage_error(
                    400, "InvalidUri", "The requested URI does not represent any resource on the server."
                )
            share_name = unquote(parts[1])
            names = [unquote(p) for p in parts[2:] if p]
            if any(n in (".", "..") or "\\" in n for n in names):
                return storage_error(
                    400, "InvalidResourceName", "The specifed resource name contains invalid characters.", head=head
                )
            path = "/".join(names)
            query = request.query
            restype, comp = query.get("restype", ""), query.get("comp", "")
            share = account.shares.get(share_name)
            if restype == "share":
                return self._share(request, account, share_name, share)
            if share is None:
                return storage_error(404, "ShareNotFound", "The specified share does not exist.", head=head)
            if restype == "directory":
                if comp == "list":
                    return self._list(request, account, share, path)
                return self._directory(request, share, path)
            if not path:
                return storage_error(
                    400, "InvalidUri", "The requested URI does not represent any resource on the server."
                )
            if comp == "range":
                return self._put_range(request, share, path)
            if comp == "rename":
                return self._rename(request, account, share, path)
            if comp in ("properties", "metadata") and request.method == "PUT":
                stored = share.file(path)
                if stored is None:
                    return storage_error(404, "ResourceNotFound", "The specified resource does not exist.")
                stored.touch()
                return Response(200, b"", self._file_headers(stored))
            return self._file(request, share, path)

    # --- Shares and directories.
    def _share(self, request: Request, account: StorageAccount, name: str, share: FileShare | None) -> Response:
        head = request.method == "HEAD"
        if request.method == "PUT":
            if share is not None:
                return storage_error(409, "ShareAlreadyExists", "The specified share already exists.")
            quota = int(request.header("x-ms-share-quota") or 5120)
            account.shares[name] = self.state.new_share(name, quota_gb=quota)
            return Response(201, b"", {"ETag": account.shares[name].etag, "Last-Modified": http_date()})
        if share is None:
            return storage_error(404, "ShareNotFound", "The specified share does not exist.", head=head)
        if request.method in ("GET", "HEAD"):
            return Response(
                200,
                b"",
                {
                    "ETag": share.etag,
                    "Last-Modified": http_date(share.created),
                    "x-ms-share-quota": str(share.quota_gb),
                },
            )
        if request.method == "DELETE":
            del account.shares[name]
            return Response(202)
        return storage_error(405, "UnsupportedHttpVerb", "The resource doesn't support the specified HTTP verb.")

    def _parent_exists(self, share: FileShare, path: str) -> bool:
        parent = path.rpartition("/")[0]
        return parent == "" or share.is_directory(parent)

    def _directory(self, request: Request, share: FileShare, path: str) -> Response:
        head = request.method == "HEAD"
        exists = path == "" or share.is_directory(path)
        if request.method == "PUT":
            if exists or share.file(path) is not None:
                return storage_error(409, "ResourceAlreadyExists", "The specified resource already exists.")
            if not self._parent_exists(share, path):
                return storage_error(404, "ParentNotFound", "The specified parent path does not exist.")
            share.make_directory(path)
            return Response(201, b"", {"ETag": f'"0x{time.time_ns():X}"', "Last-Modified": http_date()})
        if not exists:
            return storage_error(404, "ResourceNotFound", "The specified resource does not exist.", head=head)
        if request.method in ("GET", "HEAD"):
            return Response(200, b"", {"ETag": '"0x1"', "Last-Modified": http_date()})
        if request.method == "DELETE":
            if any((share.root / path).iterdir()):
                return storage_error(409, "DirectoryNotEmpty", "The specified directory is not empty.")
            share.remove_directory(path)
            return Response(202)
        return storage_error(405, "UnsupportedHttpVerb", "The resource doesn't support the specified HTTP verb.")

    def _list(self, request: Request, account: StorageAccount, share: FileShare, path: str) -> Response:
        if path and not share.is_directory(path):
            return storage_error(404, "ResourceNotFound", "The specified resource does not exist.")
        prefix = request.query.get("prefix", "")
        timestamps = "timestamps" in request.query.get("include", "").lower()
        base = path + "/" if path else ""
        entries: list[tuple[str, str]] = []
        for directory in share.directories:
            if directory.startswith(base) and "/" not in directory[len(base) :]:
                name = directory[len(base) :]
                if name.startswith(prefix):
                    entries.append((name, f"<Directory><Name>{escape(name)}</Name><Properties /></Directory>"))
        for file_path, stored in share.files.items():
            if file_path.startswith(base) and "/" not in file_path[len(base) :]:
                name = file_path[len(base) :]
                if not name.startswith(prefix):
                    continue
                extra = ""
                if timestamps:
                    written = time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime(stored.last_modified))
                    extra = (
                        f"<CreationTime>{written}</CreationTime><LastAccessTime>{written}</LastAccessTime>"
                        f"<LastWriteTime>{written}</LastWriteTime><ChangeTime>{written}</ChangeTime>"
                        f"<Last-Modified>{http_date(stored.last_modified)}</Last-Modified><Etag>{escape(stored.etag)}</Etag>"
                    )
                entries.append(
                    (
                        name,
                        f"<File><Name>{escape(name)}</Name><Properties><Content-Length>{stored.size}</Content-Length>{extra}</Properties></File>",
                    )
                )
        entries.sort()
        endpoint = f"{request.base_url}/{account.name}/"
        body = (
            f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="{escape(endpoint)}" '
            f'ShareName="{escape(share.name)}" DirectoryPath="{escape(path)}">'
            + (f"<Prefix>{escape(prefix)}</Prefix>" if prefix else "")
            + "<Entries>"
            + "".join(xml for _, xml in entries)
            + "</Entries><NextMarker /></EnumerationResults>"
        ).encode()
        return Response(200, body, {"Content-Type": "application/xml"})

    # --- Files.
    def _file_headers(self, stored: StoredFile) -> dict[str, str]:
        return {"ETag": stored.etag, "Last-Modified": http_date(stored.last_modified)}

    def _file(self, request: Request, share: FileShare, path: str) -> Response:
        head = request.method == "HEAD"
        stored = share.file(path)
        if request.method == "PUT":
            if request.header("x-ms-type").lower() != "file":
                return storage_error(
                    400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified."
                )
            if share.is_directory(path):
                return storage_error(
                    409,
                    "ResourceTypeMismatch",
                    "The specified resource type does not match the type of the existing resource.",
                )
            if not self._parent_exists(share, path):
                return storage_error(404, "ParentNotFound", "The specified parent path does not exist.")
            size = int(request.header("x-ms-content-length") or 0)
            if share.used_bytes() - (stored.size if stored else 0) + size > share.quota_gb * 1024**3:
                return storage_error(413, "ShareSizeLimitReached", "The specified share is full.")
            created = share.create_file(path, size, request.header("x-ms-content-type") or "application/octet-stream")
            return Response(201, b"", self._file_headers(created))
        if stored is None:
            return storage_error(404, "ResourceNotFound", "The specified resource does not exist.", head=head)
        if request.method == "DELETE":
            share.delete_file(path)
            return Response(202)
        if request.method not in ("GET", "HEAD"):
            return storage_error(405, "UnsupportedHttpVerb", "The resource doesn't support the specified HTTP verb.")
        total = stored.size
        headers = {
            **self._file_headers(stored),
            "x-ms-type": "File",
            "Content-Type": stored.content_type,
            "Accept-Ranges": "bytes",
        }
        requested = request.header("x-ms-range") or request.header("range")
        if head or not requested:
            headers["Content-Length"] = str(total)
            return Response(200, b"" if head else stored.data, headers, head_only=head)
        match = _RANGE_RE.fullmatch(requested)
        if match is None:
            return storage_error(
                400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format."
            )
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else total - 1
        if start >= total:
            return storage_error(
                416, "InvalidRange", "The range specified is invalid for the current size of the resource."
            )
        end = min(end, total - 1)
        headers["Content-Range"] = f"bytes {start}-{end}/{total}"
        return Response(206, stored.read(start, end), headers)

    def _put_range(self, request: Request, share: FileShare, path: str) -> Response:
        stored = share.file(path)
        if stored is None:
            return storage_error(404, "ResourceNotFound", "The specified resource does not exist.")
        match = _RANGE_RE.fullmatch(request.header("x-ms-range") or request.header("range"))
        if match is None or not match.group(2):
            return storage_error(
                400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format."
            )
        start, end = int(match.group(1)), int(match.group(2))
        if end >= stored.size or end < start:
            return storage_error(
                416, "InvalidRange", "The range specified is invalid for the current size of the resource."
            )
        if end - start + 1 > MAX_RANGE:
            return storage_error(
                413, "RequestBodyTooLarge", "The request body is too large and exceeds the maximum permissible limit."
            )
        if request.header("x-ms-write").lower() == "clear":
            stored.write(start, bytes(end - start + 1))
        else:
            if len(request.body) != end - start + 1:
                return storage_error(400, "InvalidHeaderValue", "The range does not match the length of the body.")
            stored.write(start, request.body)
        headers = self._file_headers(stored)
        headers["Content-MD5"] = base64.b64encode(hashlib.md5(request.body).digest()).decode()
        headers["x-ms-request-server-encrypted"] = "true"
        return Response(201, b"", headers)

    def _rename(self, request: Request, account: StorageAccount, share: FileShare, path: str) -> Response:
        source_url = request.header("x-ms-file-rename-source")
        source_path = urlparse(source_url).path if "://" in source_url else source_url
        parts = [unquote(p) for p in source_path.lstrip("/").split("/") if p]
        # Path-style source URLs name the account and the share first.
        if parts[:1] == [account.name]:
            parts = parts[1:]
        if parts[:1] == [share.name]:
            parts = parts[1:]
        source = "/".join(parts)
        stored = share.file(source) if source and not any(p in (".", "..") for p in parts) else None
        if stored is None:
            return storage_error(404, "ResourceNotFound", "The specified resource does not exist.")
        if not self._parent_exists(share, path):
            return storage_error(404, "ParentNotFound", "The specified parent path does not exist.")
        replace = request.header("x-ms-file-rename-replace-if-exists").lower() == "true"
        if share.file(path) is not None and path != source and not replace:
            return storage_error(409, "ResourceAlreadyExists", "The specified resource already exists.")
        stored = share.rename_file(source, path)
        return Response(200, b"", self._file_headers(stored))
