"""The `.env` that `make run` writes, read by manage.py so commands from a second shell use the
running portal's settings. Values already in the environment always win, so production (which
sets its variables, DEBUG off included) is never changed by a file left in a checkout."""

from __future__ import annotations

import os
from pathlib import Path

# The first line of a file `make run` wrote (a hand-written .env for docker compose has none).
ENV_FILE_MARKER = "# Written by `make run` (devtools/run.py)."


def env_file_path(root: Path) -> Path:
    return Path(os.environ.get("PORTAL_ENV_FILE") or root / ".env")


def load_env_file(path: Path) -> None:
    """Set each NAME=value of `path` that the environment does not have. Only a file written by
    `make run` is read: a compose `.env` holds production settings that compose passes itself."""
    try:
        text = path.read_text()
    except OSError:
        return
    if not text.startswith(ENV_FILE_MARKER):
        return
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            os.environ.setdefault(name.strip(), value)
