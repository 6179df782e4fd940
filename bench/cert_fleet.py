"""Check the certificates of 500 local TLS endpoints with bounded concurrency; print figures.

The endpoints run in a separate process (one asyncio loop, 500 listening sockets) so the servers'
handshakes do not share the checker's interpreter. Most present a valid certificate from a trustme
CA; a few are expiring, expired, for the wrong host, plain TCP or stalled, so the run also shows
that the slow cases stay bounded by the per-host timeout.

    .venv/bin/python bench/cert_fleet.py [--endpoints 500] [--concurrency 32] [--timeout 3]
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# The certificate statuses are a model enum: the checker needs Django's settings and apps.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("DEBUG", "1")

import django

django.setup()

from provisioning.certs import CertificateTarget, inspect_fleet  # noqa: E402


def serve(count: int, conn) -> None:
    import trustme

    from tests.certs_support import Endpoints, server_context

    now = dt.datetime.now(dt.UTC)
    ca = trustme.CA()
    contexts = {
        "valid": server_context(ca.issue_cert("localhost")),
        "expiring": server_context(ca.issue_cert("localhost", not_after=now + dt.timedelta(days=3))),
        "expired": server_context(
            ca.issue_cert("localhost", not_before=now - dt.timedelta(days=9), not_after=now - dt.timedelta(days=1))
        ),
        "wrong_host": server_context(ca.issue_cert("elsewhere.example")),
    }
    with Endpoints() as endpoints:
        kinds = []
        for i in range(count):
            # One in 50 of each fault; the rest valid.
            kind = {1: "expiring", 2: "expired", 3: "wrong_host", 4: "plain", 5: "stalled"}.get(i % 50, "valid")
            if kind == "plain":
                port = endpoints.plain()
            elif kind == "stalled":
                port = endpoints.stalled()
            else:
                port = endpoints.tls(contexts[kind])
            kinds.append((kind, port))
        conn.send((ca.cert_pem.bytes().decode(), kinds))
        conn.recv()  # wait until the checker is done


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoints", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args()

    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=serve, args=(args.endpoints, child), daemon=True)
    server.start()
    try:
        ca_pem, kinds = parent.recv()
        targets = [
            CertificateTarget(key=i, host="localhost", port=port, ca_pem=ca_pem) for i, (_, port) in enumerate(kinds)
        ]
        started = time.monotonic()
        results = inspect_fleet(targets, concurrency=args.concurrency, timeout=args.timeout)
        wall = time.monotonic() - started
        parent.send("done")
    finally:
        server.join(timeout=10)
        if server.is_alive():
            server.terminate()

    statuses = collections.Counter(str(r.status) for r in results.values())
    wrong = [(kinds[k][0], str(r.status)) for k, r in results.items() if kinds[k][0] != _expected(str(r.status))]
    elapsed = sorted(r.elapsed_ms for r in results.values())
    quick = [r.elapsed_ms for k, r in results.items() if kinds[k][0] != "stalled"]
    print(f"endpoints={len(targets)} concurrency={args.concurrency} per-host timeout={args.timeout:g} s")
    print(f"wall time: {wall:.2f} s (target < 10 s)")
    print(f"per check: median {statistics.median(quick):.0f} ms (non-stalled), max {elapsed[-1]} ms (stalled)")
    print(f"statuses: {dict(sorted(statuses.items()))}")
    print(f"mismatched statuses: {len(wrong)} {wrong[:5]}")


def _expected(status: str) -> str:
    return {"no_tls": "plain", "unreachable": "stalled"}.get(status, status)


if __name__ == "__main__":
    main()
