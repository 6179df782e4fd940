"""Make sure what the test suite needs is running or installed: `python -m devtools.test_env`.

Run by `make test` before pytest. Redis and PostgreSQL are started when this machine has them
but they are stopped; Chromium is installed from Debian for the browser tests, pebble (and the
namespace tools the Azure emulator runs containers with) for the Azure end-to-end tests.
"""

from __future__ import annotations

import os
import sys

from devtools.services import ensure_chromium, ensure_pebble, ensure_postgres, ensure_redis

# The same defaults as pyproject.toml's pytest env.
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/portal"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


def main() -> int:
    problems = [
        ensure_redis(os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)),
        ensure_postgres(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)),
    ]
    fatal = [p for p in problems if p]
    for warning in (ensure_chromium(), ensure_pebble()):
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
    for problem in fatal:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if fatal else 0


if __name__ == "__main__":
    sys.exit(main())
