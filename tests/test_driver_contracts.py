"""The driver contracts (issue 13): each backend is an index runtime and the share store it writes
through; states are enums that still read as text; deploy steps hand nothing to each other; the
store takes the caller's file by path; and errors say whether calling again can help."""

from __future__ import annotations

import io
import json
import os

import pytest

from devtools.azure_emulator.state import new_key
from provisioning.drivers.azure_runtime import AzureRuntime
from provisioning.drivers.azure_store import AzureShareStore
from provisioning.drivers.backend import get_runtime, get_store
from provisioning.drivers.base import DriverError, ShareFileMissing
from provisioning.drivers.local_runtime import LocalRuntime
from provisioning.drivers.local_store import LocalShareStore
from provisioning.drivers.runtime import ContainerState, ContainerStatus, IndexStatus, RunState
from provisioning.spec import SHARE_CONFIG, SHARE_PACKAGES, IndexSpec, Placement, build_index_spec


@pytest.fixture
def local_spec() -> IndexSpec:
    placement = Placement(hostname="localhost", https_port=1, http_port=2, server_port=3, tls="internal")
    return build_index_spec(index_id=5, name="shelf", team="data-platform", size="small", placement=placement)


def test_the_local_backend_gives_a_runtime_that_writes_through_the_store_callers_get(settings):
    settings.PROVISIONING_DRIVER = "provisioning.drivers.local.LocalDriver"

    runtime, store = get_runtime(), get_store()

    assert isinstance(runtime, LocalRuntime) and isinstance(store, LocalShareStore)
    assert runtime.store is store


def test_the_azure_backend_gives_a_runtime_and_a_store_sharing_one_set_of_clients(azure_emulator):
    runtime, store = get_runtime(), get_store()

    assert isinstance(runtime, AzureRuntime) and isinstance(store, AzureShareStore)
    assert runtime.store is store and runtime.clients is store.clients


def test_states_are_enums_that_compare_and_serialise_as_the_text_stored_before():
    status = IndexStatus(state=RunState.RUNNING, containers=[ContainerStatus("caddy", ContainerState.WAITING)])

    assert status.is_running and status.state == "running" and status.containers[0].state == "waiting"
    assert json.loads(json.dumps(status.as_dict())) == {
        "state": "running",
        "containers": [{"name": "caddy", "state": "waiting", "restart_count": 0, "last_event": ""}],
        "detail": "",
    }


def test_the_local_runtime_reports_a_missing_index_with_the_enum(local_spec):
    status = LocalRuntime(LocalShareStore()).status(local_spec)

    assert status.state is RunState.MISSING


def test_the_local_store_links_a_file_handed_over_by_path_and_copies_a_stream(local_spec, tmp_path):
    store = LocalShareStore()
    received = tmp_path / "portal-upload-1.part"
    received.write_bytes(b"wheel bytes")

    store.write_local_file(local_spec, SHARE_PACKAGES, "by-path.whl", received, size=11)
    with open(received, "rb") as stream:
        store.write_file(local_spec, SHARE_PACKAGES, "by-stream.whl", stream, size=11)
    share = store.share_dir(local_spec, SHARE_PACKAGES)

    assert os.path.samefile(share / "by-path.whl", received)
    assert not os.path.samefile(share / "by-stream.whl", received)
    assert (share / "by-stream.whl").read_bytes() == b"wheel bytes"


def test_a_missing_file_is_share_file_missing_which_is_permanent(local_spec):
    with pytest.raises(ShareFileMissing) as error:
        LocalShareStore().read_file(local_spec, SHARE_CONFIG, "index/tokens.json")

    assert error.value.permanent and isinstance(error.value, DriverError)


def test_write_if_changed_writes_a_missing_file_but_never_writes_past_another_read_error(local_spec, monkeypatch):
    store = LocalShareStore()
    wrote = store.write_if_changed(local_spec, SHARE_CONFIG, "Caddyfile", b"first")

    def refused(self, spec, share, path):
        raise DriverError("the share refused the read", permanent=True)

    monkeypatch.setattr(LocalShareStore, "read_file", refused)
    with pytest.raises(DriverError, match="refused the read"):
        store.write_if_changed(local_spec, SHARE_CONFIG, "Caddyfile", b"second")

    assert wrote is True
    assert (store.share_dir(local_spec, SHARE_CONFIG) / "Caddyfile").read_bytes() == b"first"


def test_each_azure_deploy_step_runs_from_a_fresh_step_list_as_a_resumed_attempt_would(azure_emulator, driver, spec):
    for position in range(len(driver.runtime.deploy_steps(spec))):
        driver.runtime.deploy_steps(spec)[position].run()

    assert driver.runtime.status(spec).state is RunState.RUNNING


def test_a_download_refused_for_a_rotated_storage_key_fetches_the_key_again(azure_emulator, driver, provisioned):
    driver.store.write_file(provisioned, SHARE_PACKAGES, "before-rotation.whl", io.BytesIO(b"ok"), size=2)
    account = azure_emulator.state.account(provisioned.placement.resources["storage_account"])
    account.keys = [new_key(), new_key()]

    data = b"".join(driver.store.read_file(provisioned, SHARE_PACKAGES, "before-rotation.whl"))

    assert data == b"ok"
