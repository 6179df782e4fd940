"""Fault injection and the request log: what tests use to make the emulator misbehave and to
count what the SDKs sent."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import asdict, dataclass, field


@dataclass
class Fault:
    """Applied to requests whose method and path match, `times` times (None: until removed).

    `status` answers with that status (and `retry_after`, `code`, `message`) instead of serving;
    `delay` sleeps first and then serves normally (so a client that timed out still had its
    request carried out, as with real Azure); `drop` resets the connection without answering.
    """

    method: str = "*"
    path: str = ".*"  # regular expression searched in the path, case-insensitive
    query: str = ""  # regular expression searched in the raw query string
    status: int | None = None
    retry_after: float | None = None
    code: str = ""
    message: str = ""
    delay: float = 0.0
    drop: bool = False
    times: int | None = 1
    hits: int = 0
    id: int = 0

    def matches(self, method: str, path: str, query: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method != "*" and self.method.upper() != method.upper():
            return False
        if not re.search(self.path, path, re.IGNORECASE):
            return False
        return not self.query or bool(re.search(self.query, query, re.IGNORECASE))

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class RequestRecord:
    service: str  # arm | file | identity | control
    method: str
    path: str
    query: str
    status: int = 0
    started: float = 0.0
    duration: float = 0.0
    fault: int | None = None  # id of the fault applied
    client_request_id: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class FaultBook:
    faults: list[Fault] = field(default_factory=list)
    log: list[RequestRecord] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _next_id: int = 1

    def add(self, fault: Fault) -> Fault:
        with self.lock:
            fault.id = self._next_id
            self._next_id += 1
            self.faults.append(fault)
        return fault

    def take(self, method: str, path: str, query: str) -> Fault | None:
        """The first matching fault, counted as used."""
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path, query):
                    fault.hits += 1
                    return fault
        return None

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()

    def record(self, record: RequestRecord) -> None:
        with self.lock:
            self.log.append(record)

    def requests(self, service: str | None = None) -> list[RequestRecord]:
        with self.lock:
            return [r for r in self.log if service is None or r.service == service]

    def clear_log(self) -> None:
        with self.lock:
            self.log.clear()


def now() -> float:
    return time.monotonic()
