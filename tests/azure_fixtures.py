"""Fixtures for the Azure driver: the Azure emulator over HTTPS (one server per test session,
emptied before each test) and settings pointing the driver and azure-identity at it; and, for
the whole index on the Azure path, an emulator that runs the containers as processes with
pebble standing in for Let's Encrypt."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from azure.identity import DefaultAzureCredential
from azure.mgmt.containerinstance import ContainerInstanceManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.storage import StorageManagementClient

from devtools.azure_emulator import AzureEmulator
from devtools.azure_emulator.resolver import fqdn_override
from devtools.pebble import Pebble
from provisioning.drivers import backend as driver_backend
from provisioning.drivers.azure import AzureDriver
from provisioning.drivers.azure_runtime import AzureRuntime
from provisioning.drivers.runtime import DeployStep
from provisioning.spec import IndexSpec, build_index_spec
from tests.driver_support import RuntimeAndStore, driver_of

AZURE_DRIVER = "provisioning.drivers.azure.AzureDriver"
INDEX_ID = 7


def pinned(repository: str) -> str:
    """An image reference pinned by a well-formed digest: the emulator pulls nothing."""
    return f"{repository}@sha256:{hashlib.sha256(repository.encode()).hexdigest()}"


def azure_settings(emulator: AzureEmulator) -> dict[str, object]:
    """Settings for the driver against `emulator`, tuned for fast tests (no polling waits,
    no retry backoff, short timeouts)."""
    return {
        "PROVISIONING_DRIVER": AZURE_DRIVER,
        "AZURE_SUBSCRIPTION_ID": emulator.subscription_id,
        "AZURE_LOCATION": "westeurope",
        "AZURE_RESOURCE_GROUP_POLICY": "shared",
        "AZURE_RESOURCE_GROUP": "private-indexes",
        "AZURE_STORAGE_SKU": "Standard_LRS",
        "CADDY_IMAGE": pinned("docker.io/library/caddy"),
        "PYPISERVER_IMAGE": pinned("docker.io/pypiserver/pypiserver"),
        "AZURE_REGISTRY_SERVER": "",
        "AZURE_REGISTRY_IDENTITY": "",
        "AZURE_REGISTRY_USERNAME": "",
        "AZURE_REGISTRY_PASSWORD": "",
        "AZURE_DNS_LABEL_SCOPE": "TenantReuse",
        "AZURE_STARTUP_TIMEOUT_SECONDS": 5.0,
        "AZURE_LOG_TAIL_LINES": 5,
        "AZURE_CRASH_LOOP_RESTARTS": 3,
        "AZURE_NAME_SALT": "tests",
        "AZURE_ARM_BASE_URL": emulator.url,
        "AZURE_FILE_ENDPOINT": emulator.file_endpoint_template,
        "AZURE_CA_BUNDLE": str(emulator.ca_path),
        "AZURE_DISABLE_INSTANCE_DISCOVERY": True,
        "AZURE_LRO_TIMEOUT_SECONDS": 20.0,
        "AZURE_POLLING_INTERVAL_SECONDS": 0.0,
        "AZURE_RETRY_TOTAL": 4,
        "AZURE_RETRY_BACKOFF_FACTOR": 0.0,
        "AZURE_CONNECTION_TIMEOUT_SECONDS": 5.0,
        "AZURE_READ_TIMEOUT_SECONDS": 10.0,
        "AZURE_FILE_RETRY_TOTAL": 2,
        "AZURE_FILE_RETRY_BACKOFF_SECONDS": 0.0,
        "AZURE_FILE_MAX_CONCURRENCY": 4,
    }


def acme_settings(pebble: Pebble, issuer_roots: Path) -> dict[str, object]:
    """Caddy orders from `pebble`; the index is ready once its certificate chains to pebble's root."""
    return {
        "ACME_DIRECTORY_URL": pebble.directory_url,
        "ACME_EMAIL": "platform-team@example.com",
        "ACME_CA_ROOT": str(pebble.tls_ca_path),
        "ACME_ISSUER_ROOTS": str(issuer_roots),
        "ACME_CERTIFICATE_TIMEOUT_SECONDS": 60.0,
    }


def sdk_clients(emulator: AzureEmulator) -> SimpleNamespace:
    """The three management clients, authenticated through the real azure-identity path (the
    emulator's environment must be set: AZURE_* and the authority host)."""
    ca = str(emulator.ca_path)
    credential = DefaultAzureCredential(disable_instance_discovery=True, connection_verify=ca)
    options = {"base_url": emulator.url, "connection_verify": ca, "polling_interval": 0, "retry_backoff_factor": 0}
    sub = emulator.subscription_id
    return SimpleNamespace(
        emulator=emulator,
        credential=credential,
        resources=ResourceManagementClient(credential, sub, **options),
        storage=StorageManagementClient(credential, sub, **options),
        containers=ContainerInstanceManagementClient(credential, sub, **options),
    )


def azure_environment(emulator: AzureEmulator, **more: object) -> dict[str, str]:
    """The same settings (and `more`) as environment variables, for a child process (rqworker)."""
    env = dict(emulator.environment())
    for name, value in {**azure_settings(emulator), **more}.items():
        env[name] = ("1" if value else "0") if isinstance(value, bool) else str(value)
    return env


@pytest.fixture(scope="session")
def azure_emulator_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureEmulator]:
    emulator = AzureEmulator(cert_dir=tmp_path_factory.mktemp("azure-emulator")).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def azure_emulator(
    azure_emulator_server: AzureEmulator, settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AzureEmulator]:
    """An empty emulator; the driver setting, the Azure settings and the service principal
    variables (read by the real azure-identity EnvironmentCredential) point at it."""
    emulator = azure_emulator_server
    emulator.reset()
    for name, value in azure_settings(emulator).items():
        setattr(settings, name, value)
    for name, value in emulator.environment().items():
        monkeypatch.setenv(name, value)
    # This emulator runs no containers, so no certificate can ever be served: these tests are
    # about ARM and Files. The certificate wait runs for real in test_azure_end_to_end.py.
    monkeypatch.setattr(AzureRuntime, "_wait_certificate", lambda self, spec: None)
    driver_backend._backend_for.cache_clear()
    yield emulator
    emulator.faults.clear()
    driver_backend._backend_for.cache_clear()


def index_spec_for(
    driver: RuntimeAndStore, *, index_id: int = INDEX_ID, name: str = "team-index", size: str = "small"
) -> IndexSpec:
    placement = driver.reserve(index_id=index_id, name=name, previous=None)
    return build_index_spec(index_id=index_id, name=name, team="data-platform", size=size, placement=placement)


def run_steps(steps: list[DeployStep]) -> None:
    for step in steps:
        step.run()


def group_definition(emulator: AzureEmulator, spec: IndexSpec) -> dict:
    names = spec.placement.resources
    key = (emulator.subscription_id.lower(), names["resource_group"].lower(), names["container_group"].lower())
    return emulator.state.container_groups[key].definition


@pytest.fixture
def driver(azure_emulator) -> RuntimeAndStore:
    return driver_of(AzureDriver())


@pytest.fixture
def spec(driver) -> IndexSpec:
    return index_spec_for(driver)


@pytest.fixture
def provisioned(azure_emulator, driver, spec) -> IndexSpec:
    run_steps(driver.deploy_steps(spec))
    return spec


@pytest.fixture
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    """Let's Encrypt's ACME test server on free loopback ports (Debian's pebble package)."""
    if not Pebble.available():
        pytest.skip("pebble is not installed (apt-get install pebble; devtools/test_env.py does it)")
    with Pebble(tmp_path_factory.mktemp("pebble")) as server:
        yield server


@pytest.fixture
def azure_emulator_running(
    pebble: Pebble, tmp_path_factory: pytest.TempPathFactory, settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AzureEmulator]:
    """An emulator that runs each container group's containers as processes (their only way
    out: pebble's ACME port; their public 80/443 on the ports pebble validates challenges on),
    the driver pointed at it and at pebble, and the groups' FQDNs resolving to their mapped
    loopback ports in this process."""
    folder = tmp_path_factory.mktemp("azure-running")
    emulator = AzureEmulator(
        cert_dir=folder,
        run_containers=True,
        egress_ports=(pebble.acme_port,),
        host_ports={80: pebble.http_port, 443: pebble.tls_port},  # where pebble validates challenges
    ).start()
    issuer_roots = folder / "acme-issuer-roots.pem"
    issuer_roots.write_text(pebble.issuer_root_pem())
    emulator.acme_settings = acme_settings(pebble, issuer_roots)  # type: ignore[attr-defined]  # for child workers
    for name, value in {**azure_settings(emulator), **emulator.acme_settings}.items():  # type: ignore[attr-defined]
        setattr(settings, name, value)
    settings.AZURE_RESOURCE_GROUP_POLICY = "per-index"  # teardown then removes everything
    settings.AZURE_STARTUP_TIMEOUT_SECONDS = 60.0  # real processes: Caddy, the index server
    for name, value in emulator.environment().items():
        monkeypatch.setenv(name, value)
    driver_backend._backend_for.cache_clear()
    try:
        with fqdn_override(emulator.public_ports):
            yield emulator
    finally:
        emulator.stop()
        driver_backend._backend_for.cache_clear()
