"""Shared by the index commands: wait for an index to leave its working states."""

from __future__ import annotations

import time

from provisioning.models import ACTIVE_STATES, PrivateIndex


def wait_for_index(index: PrivateIndex, *, timeout: float, until: set[str] | None = None) -> PrivateIndex:
    """Poll the database until the index is in `until` (default: any state that is not active)."""
    deadline = time.monotonic() + timeout
    while True:
        index.refresh_from_db()
        done = index.state in until if until else index.state not in ACTIVE_STATES
        if done or time.monotonic() > deadline:
            return index
        time.sleep(0.2)
