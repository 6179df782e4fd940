"""Run the Azure emulator on its own so the portal can be run against it:

    .venv/bin/python -m devtools.azure_emulator --port 10443 --cert-dir var/azure-emulator

(the project's venv: it needs trustme and the other requirements). The default port, 10443,
is not the local sign-in provider's (8443), so it runs next to `make run`.

It prints the settings to export. Faults and the request log: the control API under
/_emulator/ (POST /_emulator/faults {"method": "PUT", "path": "containerGroups", "status": 429,
"retry_after": 1, "times": 2}; GET /_emulator/requests; GET /_emulator/state; POST /_emulator/reset;
GET /_emulator/containers: processes and port mapping with --run-containers).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import threading
from pathlib import Path

from .server import AzureEmulator

DEFAULT_PORT = 10443  # not 8443: that is the local sign-in provider's (make run)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.azure_emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("AZURE_EMULATOR_PORT") or DEFAULT_PORT))
    parser.add_argument("--cert-dir", type=Path, default=Path("var/azure-emulator"))
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--run-containers", action="store_true", help="run each container group's commands as local processes (root)"
    )
    parser.add_argument(
        "--egress-port", type=int, action="append", default=[], help="a host loopback port the containers may reach"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    emulator = AzureEmulator(
        cert_dir=args.cert_dir,
        host=args.host,
        port=args.port,
        run_containers=args.run_containers,
        egress_ports=tuple(args.egress_port),
    ).start()
    settings = {
        **emulator.environment(),
        "AZURE_SUBSCRIPTION_ID": emulator.subscription_id,
        "AZURE_ARM_BASE_URL": emulator.url,
        "AZURE_FILE_ENDPOINT": emulator.file_endpoint_template,
        "AZURE_CA_BUNDLE": str(emulator.ca_path.resolve()),
        "AZURE_DISABLE_INSTANCE_DISCOVERY": "1",
        "PROVISIONING_DRIVER": "provisioning.drivers.azure.AzureDriver",
    }
    print(f"Azure emulator listening on {emulator.url} (CA: {emulator.ca_path})", flush=True)
    print("Export these for the portal:", flush=True)
    for name, value in settings.items():
        print(f"export {name}={value}", flush=True)
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stopped.set())
    with contextlib.suppress(KeyboardInterrupt):
        stopped.wait()
    emulator.stop()


if __name__ == "__main__":
    main()
