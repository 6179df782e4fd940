"""Running the real pip and twine against an index, with the machine's CA overrides removed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# These override pip's --cert and requests' verify= on this kind of machine (see notes).
_OVERRIDES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT", "SSL_CERT_FILE", "PIP_FIND_LINKS", "PIP_INDEX_URL")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _OVERRIDES}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update(extra)
    return env


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, env=clean_env(), **kwargs)


def twine_upload(files: list[Path], *, repository_url: str, username: str, password: str, ca: Path | None = None):
    cert = ["--cert", str(ca)] if ca else []
    return run(
        [sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
         "--repository-url", repository_url, *cert, "-u", username, "-p", password, *map(str, files)]
    )  # fmt: skip


def fresh_venv(path: Path) -> Path:
    """A new virtual environment with pip (no site packages); returns its python."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    return path / "bin" / "python"


def pip_install(python: Path, requirement: str, *, index_url: str, ca: Path):
    return run(
        [str(python), "-m", "pip", "install", "--no-cache-dir", "--index-url", index_url,
         "--cert", str(ca), requirement]
    )  # fmt: skip
