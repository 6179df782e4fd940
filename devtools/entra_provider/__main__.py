"""Run the local Entra-shaped provider:

    python -m devtools.entra_provider --port 8443 --state-dir var/entra \\
        --redirect-uri http://127.0.0.1:8000/auth/callback

Prints the authority and the CA certificate path (also written to <state-dir>/provider.json)
and serves until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from devtools.entra_provider.demo import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT_ID
from devtools.entra_provider.server import EntraProvider


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.entra_provider", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--state-dir", type=Path, required=True, help="where ca.pem and provider.json go")
    parser.add_argument("--tenant-id", default=DEMO_TENANT_ID)
    parser.add_argument("--client-id", default=DEMO_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEMO_CLIENT_SECRET)
    parser.add_argument(
        "--redirect-uri",
        action="append",
        default=[],
        help="a registered redirect URI (repeatable); default http://127.0.0.1:8000/auth/callback",
    )
    parser.add_argument("--test-hooks", action="store_true", help="enable POST /<tenant>/_test/tamper")
    args = parser.parse_args(argv)

    provider = EntraProvider(
        host=args.host,
        port=args.port,
        state_dir=args.state_dir,
        tenant_id=args.tenant_id,
        client_id=args.client_id,
        client_secret=args.client_secret,
        redirect_uris=args.redirect_uri or ["http://127.0.0.1:8000/auth/callback"],
        test_hooks=args.test_hooks,
    ).start()
    print(f"authority: {provider.authority}", flush=True)
    print(f"ca: {provider.ca_path}", flush=True)
    print(f"state: {args.state_dir / 'provider.json'}", flush=True)

    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
    provider.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
