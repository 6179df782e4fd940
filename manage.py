#!/usr/bin/env python
import os
import sys
from pathlib import Path

from portal.envfile import env_file_path, load_env_file

if __name__ == "__main__":
    # The running `make run`'s settings (DEBUG, database, sign-in); the environment wins.
    load_env_file(env_file_path(Path(__file__).resolve().parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    from django.core.management import execute_from_command_line

    from portal.dependencies import outage_message

    try:
        execute_from_command_line(sys.argv)
    except Exception as exc:
        # PostgreSQL or Redis out of reach: one line saying which, not a traceback.
        message = outage_message(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)
