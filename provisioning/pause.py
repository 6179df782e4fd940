"""Test-only pause points, so a test can kill a worker at an exact place inside a step.

With STEP_PAUSE_DIR set (never in production), code passing `pause_point("name")` finds out
whether the file STEP_PAUSE_DIR/name exists; if so it creates name.reached and waits until the
test removes name (or kills the process). Timing a SIGKILL by sleeping would land in a different
place on a slower machine; a file handshake lands in the same place every time.
"""

from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings


def pause_point(name: str) -> None:
    if not settings.STEP_PAUSE_DIR:
        return
    gate = Path(settings.STEP_PAUSE_DIR) / name
    if not gate.exists():
        return
    gate.with_name(f"{name}.reached").touch()
    while gate.exists():
        time.sleep(0.05)
