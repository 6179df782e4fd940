"""Shared by the index commands: wait for an index to leave its working states."""

from __future__ import annotations

import time

from provisioning.models import PrivateIndex


def wait_for_index(index: PrivateIndex, *, timeout: float, until: set[str] | None = None) -> PrivateIndex:
    """Poll the database until the index is in `until` (default: any state that is not active)."""
    deadline = time.monotonic() + timeout
    while True:
        index.refresh_from_db()
        done = index.state in until if until else not index.is_active
        if done or time.monotonic() > deadline:
            return index
        time.sleep(0.2)
