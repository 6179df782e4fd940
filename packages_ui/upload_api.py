"""The PyPI legacy upload API that twine, `uv publish`, `poetry publish` and `pdm publish` speak,
at each index's upload URL (`PrivateIndex.upload_url`).

A request is a multipart POST with `:action=file_upload`, the distribution in the `content` file
field and twine's metadata fields (`name`, `version`, `sha256_digest`, ...), authenticated by
HTTP Basic with one of the index's publish tokens. The file is received exactly as a page upload
(hashed on the way, on disk, capped at PACKAGES_MAX_UPLOAD_BYTES) and stored by the same
`package_store`, so the same validation, record, audit entry and refresh follow.

A refusal carries the portal's message in the HTTP reason phrase as well as the body: twine
prints `HTTPError: 400 Bad Request from <url>` followed by the reason, and shows no body.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, UnreadablePostError
from django.http.multipartparser import MultiPartParserError

from packages_ui import services
from packages_ui.models import PackageFile
from packages_ui.receiving import HashingUploadHandler, received_from_form, too_large_error
from packages_ui.validation import CHUNK_SIZE, DistributionError
from provisioning.models import IndexCredential, PrivateIndex
from provisioning.services import credential_authenticate

logger = logging.getLogger(__name__)

# Long enough for any portal message; a status line is not the place for more.
MAX_REASON_LENGTH = 400
# What twine, poetry, pdm and uv look for to treat a refusal as "this file is already there"
# (`--skip-existing`): PyPI's phrase, and pypiserver's 409.
FILE_EXISTS = "File already exists"
UPLOAD_CHALLENGE = 'Basic realm="package index uploads"'


class UploadRefused(Exception):
    """An upload the API answers with `status` and `message` (and extra response headers)."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def reason_phrase(message: str) -> str:
    """The message as an HTTP reason phrase: one line of printable latin-1, truncated."""
    line = " ".join("".join(c if c.isprintable() else " " for c in message).split())
    line = line.encode("latin-1", "replace").decode("latin-1")
    return line if len(line) <= MAX_REASON_LENGTH else line[: MAX_REASON_LENGTH - 3] + "..."


def refusal_response(refused: UploadRefused) -> HttpResponse:
    response = HttpResponse(
        refused.message + "\n", status=refused.status, reason=reason_phrase(refused.message),
        content_type="text/plain; charset=utf-8",
    )  # fmt: skip
    for name, value in refused.headers.items():
        response[name] = value
    return response


def basic_credentials(request: HttpRequest) -> tuple[str, str] | None:
    """(user name, password) from an `Authorization: Basic` header, or None."""
    scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    return (username, password) if colon else None


def upload_credential(*, request: HttpRequest, index: PrivateIndex | None) -> IndexCredential:
    """The publish token of `index` the request authenticates with. Raises UploadRefused: 401
    (with the challenge clients expect) for missing or wrong credentials or no such index, 403
    for a read token. Until a token is accepted the answer names no index and does not say
    whether it exists: the caller may be anyone."""
    given = basic_credentials(request)
    credential = None
    if given is not None and index is not None:
        credential = credential_authenticate(index=index, username=given[0], password=given[1])
    if index is None or credential is None:
        raise UploadRefused(
            401, "Invalid or missing credentials: upload with a publish token of this index (its user name "
            "and password).",
            headers={"WWW-Authenticate": UPLOAD_CHALLENGE},
        )  # fmt: skip
    if credential.kind != IndexCredential.Kind.PUBLISH:
        raise UploadRefused(
            403, f"{credential.username} is a read token; uploading to {index.name} needs a publish token."
        )
    return credential


def _drain(request: HttpRequest) -> None:
    # A refusal sent before the body is read can reach the client as a reset connection
    # instead of the answer (depending on the server); reading it costs no memory.
    with contextlib.suppress(OSError, UnreadablePostError):
        while request.read(CHUNK_SIZE):
            pass


def _store(
    request: HttpRequest, index: PrivateIndex, credential: IndexCredential, handler: HashingUploadHandler
) -> PackageFile:
    """Parse the multipart body (the file streams to disk through `handler`) and store the file.
    Raises UploadRefused."""
    if request.content_type != "multipart/form-data":
        raise UploadRefused(400, "Send a multipart/form-data body with :action=file_upload and the file in content.")
    try:
        action = request.POST.get(":action", "")
        files = request.FILES.getlist("content")
    except (MultiPartParserError, SuspiciousOperation) as exc:
        raise UploadRefused(400, f"The upload could not be read: {exc}") from exc
    except UnreadablePostError as exc:
        raise UploadRefused(400, "The upload was interrupted. Nothing was stored.") from exc
    if action != "file_upload":
        raise UploadRefused(400, f"Unsupported :action {action!r}: this URL only takes file_upload.")
    if handler.too_large:
        raise UploadRefused(400, too_large_error().message)
    if len(files) != 1:
        raise UploadRefused(400, "Send exactly one distribution file in the content field.")
    with received_from_form(files[0]) as received:
        expected = request.POST.get("sha256_digest", "").strip().lower()
        if expected and expected != received.sha256:
            raise UploadRefused(
                400, f"sha256_digest does not match the received file ({received.sha256}): "
                "the file changed on the way. Nothing was stored.",
            )  # fmt: skip
        try:
            return services.package_store(
                index=index, received=received, actor=credential.created_by, source=PackageFile.Source.API,
                request=request, credential=credential,
            )  # fmt: skip
        except DistributionError as exc:
            if exc.code == "duplicate":
                raise UploadRefused(409, f"{FILE_EXISTS}: {exc.message}") from exc
            raise UploadRefused(400, exc.message) from exc


def legacy_upload_respond(request: HttpRequest, index_id: int) -> HttpResponse:
    """Authenticate, receive, validate and store one file; the answer twine understands."""
    # Tokens only: whatever session cookie comes along must not make this request anyone's.
    request.user = AnonymousUser()
    handler = HashingUploadHandler(request)
    request.upload_handlers = [handler]
    try:
        credential = upload_credential(request=request, index=PrivateIndex.objects.filter(pk=index_id).first())
        index = credential.index  # the instance given above (a related manager's known object)
        if not index.is_serving:
            raise UploadRefused(
                503, f"{index.name} is {index.get_state_display().lower()}; it takes uploads once it is ready."
            )
        package = _store(request, index, credential, handler)
    except UploadRefused as refused:
        _drain(request)
        logger.info("Upload to index %s refused (%d): %s", index_id, refused.status, refused.message)
        return refusal_response(refused)
    message = f"Stored {package.filename} on {index.name}; it is served after the next refresh."
    return HttpResponse(message + "\n", content_type="text/plain; charset=utf-8")
