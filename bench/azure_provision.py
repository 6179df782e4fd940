"""The whole index on the Azure path, timed: provisioning through the Azure driver against the
emulator, which runs the containers (the project's caddy and the index server) as processes, with
pebble standing in for Let's Encrypt; then upload (file and manifest through the File service, as
the portal writes them: no restart), pip install over HTTPS, restart and teardown.
Median of `--runs` journeys (root is needed: the emulator gives each group a network namespace).

    .venv/bin/python bench/azure_provision.py [--runs 3]

Each run builds a new index with the deploy steps plus the credentials write the provisioning
service adds, in one process with one driver, as a worker does. "Emulator time" is the union of
the intervals in which the emulator was handling one of the provisioning's requests; "portal
time beyond the emulator" is the rest of the provisioning's wall-clock time, without the wait for
the certificate (Caddy ordering from pebble, which is the index's time, not the portal's): our
code, the SDKs, TLS and the loopback network. Certificates are counted in pebble's log, per
index: "certificates issued: 1 (after restart: 1)" means one issuance and none added by the
restart (Caddy found its certificate on caddy-certs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

READ_USER, READ_PASSWORD = "bench-reader", "bench-read-password-0123456789"


def _union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def _pip_environment() -> dict[str, str]:
    """No CA bundle or pip setting from this machine may override the --cert given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        env.pop(name, None)
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1")
    return env


def _pinned(repository: str) -> str:
    return f"{repository}@sha256:{hashlib.sha256(repository.encode()).hexdigest()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from devtools.azure_emulator import AzureEmulator
    from devtools.azure_emulator.resolver import child_environment, fqdn_override
    from devtools.pebble import Pebble

    work = Path(tempfile.mkdtemp(prefix="azure-bench-"))
    pebble = Pebble(work / "pebble").start()
    emulator = AzureEmulator(
        cert_dir=work / "emulator",
        run_containers=True,
        egress_ports=(pebble.acme_port,),
        host_ports={80: pebble.http_port, 443: pebble.tls_port},  # pebble validates the challenges there
    ).start()
    roots = work / "acme-issuer-roots.pem"
    roots.write_text(pebble.issuer_root_pem())
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
            "AZURE_RESOURCE_GROUP_POLICY": "per-index",
            # The emulator answers Retry-After: 0; production polls as Azure's Retry-After says.
            "AZURE_POLLING_INTERVAL_SECONDS": "0",
            "ACME_DIRECTORY_URL": pebble.directory_url,
            "ACME_EMAIL": "bench@example.com",
            "ACME_CA_ROOT": str(pebble.tls_ca_path),
            "ACME_ISSUER_ROOTS": str(roots),
            "ACME_CERTIFICATE_TIMEOUT_SECONDS": "60",
            # The driver wants digest-pinned images; the emulator pulls nothing, any digest does.
            "CADDY_IMAGE": _pinned("docker.io/library/caddy"),
            "PYPISERVER_IMAGE": _pinned("docker.io/pypiserver/pypiserver"),
            "AZURE_STARTUP_TIMEOUT_SECONDS": "60",
        }
    )
    import django

    django.setup()
    from provisioning.drivers.azure import AzureDriver
    from provisioning.index_server import hash_token
    from provisioning.spec import MANIFEST_PATH, SHARE_CONFIG, SHARE_PACKAGES, TOKENS_PATH, build_index_spec
    from tests.builders import build_wheel
    from tests.index_server_support import manifest_entry

    backend = AzureDriver()
    runtime, store = backend.runtime, backend.store
    wheel = build_wheel(work, "bench-demo", "1.0")
    python = work / "venv" / "bin" / "python"
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True, timeout=120)
    pip_env = child_environment(emulator.url, emulator.ca_path, work / "resolver", _pip_environment())
    tokens = json.dumps({"version": 1, "tokens": {READ_USER: hash_token(READ_PASSWORD)}}).encode()
    files = [manifest_entry(wheel, "bench-demo", "1.0", with_metadata=False)]
    manifest = json.dumps({"version": 1, "generation": "1", "index": "bench", "upload_url": "", "files": files})
    rows = []
    try:
        with fqdn_override(emulator.public_ports):
            for run in range(args.runs):
                emulator.clear_log()
                index_id = 1000 + run
                issued_before = pebble.issued_count()
                started = time.perf_counter()
                placement = runtime.reserve(index_id=index_id, name=f"bench-{run}", previous=None)
                spec = build_index_spec(
                    index_id=index_id, name=f"bench-{run}", team="bench", size="small", placement=placement
                )
                certificate_wait = 0.0
                for step in runtime.deploy_steps(spec):
                    step_started = time.perf_counter()
                    step.run()
                    if step.name == "certificate":
                        certificate_wait = time.perf_counter() - step_started
                store.write_if_changed(spec, SHARE_CONFIG, TOKENS_PATH, tokens)  # as the credentials step
                wall = time.perf_counter() - started
                log = emulator.requests()
                counts = Counter(r.service for r in log)
                azure = _union_seconds([(r.started, r.started + r.duration) for r in log])
                portal = wall - certificate_wait - azure
                issued = pebble.issued_count() - issued_before

                # Upload as the portal does: the file, then the manifest that lists it (the index
                # server picks it up without a restart); then pip.
                with wheel.open("rb") as source:
                    store.write_file(spec, SHARE_PACKAGES, wheel.name, source, size=wheel.stat().st_size)
                store.write_if_changed(spec, SHARE_CONFIG, MANIFEST_PATH, manifest.encode())
                host = runtime.settled_placement(spec).hostname  # the FQDN Azure gave
                index_url = f"https://{READ_USER}:{READ_PASSWORD}@{host}/simple/"
                pip_started = time.perf_counter()
                pip = subprocess.run(
                    [str(python), "-m", "pip", "install", "--force-reinstall", "--index-url", index_url,
                     "--cert", str(roots), "bench-demo==1.0"],
                    env=pip_env, capture_output=True, text=True, timeout=180,
                )  # fmt: skip
                pip_seconds = time.perf_counter() - pip_started
                if pip.returncode != 0:
                    print(pip.stdout[-1500:], pip.stderr[-1500:], file=sys.stderr)
                runtime.restart(spec)
                issued_after_restart = pebble.issued_count() - issued_before
                for step in runtime.teardown_steps(spec):
                    step.run()
                left = emulator.running_pids(), emulator.snapshot()["storage_accounts"]
                rows.append(
                    {
                        "wall": wall,
                        "azure": azure,
                        "certificate": certificate_wait,
                        "portal": portal,
                        "pip": pip_seconds,
                        "ok": pip.returncode == 0,
                        "issued": issued,
                        "issued_after_restart": issued_after_restart,
                        **counts,
                    }
                )
                print(
                    f"run {run + 1}: provisioning {counts['arm']} ARM + {counts['file']} File + "
                    f"{counts.get('identity', 0)} token requests; wall {wall * 1000:.0f} ms, emulator "
                    f"{azure * 1000:.0f} ms, certificate wait {certificate_wait * 1000:.0f} ms, portal "
                    f"{portal * 1000:.0f} ms; pip install {pip_seconds:.1f} s "
                    f"({'ok' if pip.returncode == 0 else 'failed'}); certificates {issued} then {issued_after_restart}"
                    f"; left after teardown: {len(left[0])} processes, {len(left[1])} accounts"
                )
    finally:
        emulator.stop()
        pebble.stop()
        shutil.rmtree(work, ignore_errors=True)

    def median(key: str) -> float:
        return statistics.median(row.get(key, 0) for row in rows)

    print()
    print(f"Median of {len(rows)} journeys (provision, upload, pip install, restart, teardown):")
    print(f"pip install over HTTPS: {'ok' if all(r['ok'] for r in rows) else 'failed'}")
    issued, after = max(r["issued"] for r in rows), max(r["issued_after_restart"] for r in rows)
    print(f"certificates issued: {issued} (after restart: {after})")
    print(f"ARM requests: {median('arm'):.0f}")
    print(f"File requests: {median('file'):.0f}")
    print(f"provisioning wall time: {median('wall') * 1000:.0f} ms")
    print(f"emulator (Azure) time: {median('azure') * 1000:.0f} ms")
    print(f"certificate wait (Caddy + pebble): {median('certificate') * 1000:.0f} ms")
    print(f"portal time beyond the emulator: {median('portal') * 1000:.0f} ms")
    print(f"pip install over HTTPS time: {median('pip') * 1000:.0f} ms")


if __name__ == "__main__":
    main()
