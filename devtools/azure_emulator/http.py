"""Small request/response types shared by the emulator's services."""

from __future__ import annotations

import email.utils
import json
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qsl


@dataclass
class Request:
    method: str
    path: str  # raw (still percent-encoded) path
    raw_query: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    base_url: str  # https://127.0.0.1:PORT

    @property
    def query(self) -> dict[str, str]:
        return {k.lower(): v for k, v in parse_qsl(self.raw_query, keep_blank_values=True)}

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def json(self) -> dict:
        return json.loads(self.body or b"{}")


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # HEAD answers carry the headers (Content-Length of the resource) but no body.
    head_only: bool = False


def json_response(status: int, payload: object | None = None, headers: dict[str, str] | None = None) -> Response:
    body = b"" if payload is None else json.dumps(payload).encode()
    out = {"Content-Type": "application/json; charset=utf-8"} if payload is not None else {}
    out.update(headers or {})
    return Response(status, body, out)


def arm_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """ARM's error shape (CloudError): {"error": {"code", "message"}}."""
    return json_response(status, {"error": {"code": code, "message": message}}, headers)


def http_date(timestamp: float | None = None) -> str:
    return email.utils.formatdate(timestamp if timestamp is not None else time.time(), usegmt=True)


def iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime())


def new_id() -> str:
    return str(uuid.uuid4())
