"""How many ARM and File requests one provisioning sends, and how much time the portal spends
beyond the time Azure (here: the emulator) spends answering. Median of 5 provisionings.

    .venv/bin/python bench/azure_provision.py [--runs 5]

Each run builds a new index through the Azure driver's deploy steps plus the credentials write
the provisioning service adds (the tokens file), in one process with one driver, as a worker
does. "Emulator time" is the union of the intervals in which the emulator was handling one of the
run's requests (parallel range uploads overlap); "portal time" is the rest of the wall-clock
time: our code, the SDKs, TLS and the loopback network.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def _pinned(repository: str) -> str:
    return f"{repository}@sha256:{hashlib.sha256(repository.encode()).hexdigest()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from devtools.azure_emulator import AzureEmulator

    emulator = AzureEmulator(cert_dir=Path(tempfile.mkdtemp(prefix="azure-bench-"))).start()
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(name, None)
    os.environ.update(emulator.environment())
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.update(
        {
            "AZURE_SUBSCRIPTION_ID": emulator.subscription_id,
            "AZURE_ARM_BASE_URL": emulator.url,
            "AZURE_FILE_ENDPOINT": emulator.file_endpoint_template,
            "AZURE_CA_BUNDLE": str(emulator.ca_path),
            "AZURE_DISABLE_INSTANCE_DISCOVERY": "1",
            # The emulator answers Retry-After: 0; production polls as Azure's Retry-After says.
            "AZURE_POLLING_INTERVAL_SECONDS": "0",
            # The driver wants digest-pinned images; the emulator pulls nothing, any digest does.
            "CADDY_IMAGE": _pinned("docker.io/library/caddy"),
            "PYPISERVER_IMAGE": _pinned("docker.io/pypiserver/pypiserver"),
        }
    )
    import django

    django.setup()
    from provisioning.drivers.azure import AzureDriver
    from provisioning.spec import SHARE_CONFIG, TOKENS_PATH, build_index_spec

    driver = AzureDriver()
    rows = []
    try:
        for run in range(args.runs):
            emulator.clear_log()
            index_id = 1000 + run
            started = time.perf_counter()
            placement = driver.reserve(index_id=index_id, name=f"bench-{run}", previous=None)
            spec = build_index_spec(
                index_id=index_id, name=f"bench-{run}", team="bench", size="small", placement=placement
            )
            for step in driver.deploy_steps(spec):
                step.run()
            tokens = b'{"tokens": {"portal-internal": "hmac-sha256$00$00"}, "version": 1}'
            driver.write_if_changed(spec, SHARE_CONFIG, TOKENS_PATH, tokens)  # as the credentials step does
            wall = time.perf_counter() - started
            log = emulator.requests()
            counts = Counter(r.service for r in log)
            azure = _union_seconds([(r.started, r.started + r.duration) for r in log])
            rows.append({"wall": wall, "azure": azure, "portal": wall - azure, **counts})
            detail = Counter((r.service, r.method, r.status) for r in log)
            print(
                f"run {run + 1}: {counts['arm']} ARM + {counts['file']} File + {counts.get('identity', 0)} token "
                f"requests; wall {wall * 1000:.0f} ms, emulator {azure * 1000:.0f} ms, "
                f"portal {(wall - azure) * 1000:.0f} ms"
            )
            if run == 0:
                for (service, method, status), n in sorted(detail.items()):
                    print(f"    {service:8} {method:6} {status}  x{n}")
    finally:
        emulator.stop()

    def median(key: str) -> float:
        return statistics.median(row.get(key, 0) for row in rows)

    print()
    print(f"Median of {len(rows)} provisionings:")
    print(f"  ARM requests per provisioning:   {median('arm'):.0f}")
    print(f"  File requests per provisioning:  {median('file'):.0f}")
    print(f"  wall time:                       {median('wall') * 1000:.0f} ms")
    print(f"  emulator (Azure) time:           {median('azure') * 1000:.0f} ms")
    print(f"  portal's own time beyond Azure:  {median('portal') * 1000:.0f} ms  (target < 1000 ms)")
    print(f"ARM requests: {median('arm'):.0f}")
    print(f"portal time beyond the emulator: {median('portal') * 1000:.0f} ms")


if __name__ == "__main__":
    main()
