"""Issue 14: the local driver knows every process it started, even one it never recorded; it
stops orphans on teardown and in stop_local_indexes; and it only believes a process is up when
that process's pid owns the listening port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from provisioning import services
from provisioning.drivers import local_processes
from provisioning.drivers.backend import get_runtime
from provisioning.models import PrivateIndex
from provisioning.system_checks import local_port_range_check
from tests.recovery_support import wait_for_files

pytestmark = pytest.mark.e2e


def _orphan(folder: Path) -> subprocess.Popen:
    """A process naming the index folder that no pid file records (as a killed worker leaves)."""
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", str(folder / "shares" / "orphan")],
        start_new_session=True,
    )


def _index_pids(index: PrivateIndex) -> list[int]:
    return [p.pid for p in local_processes.processes_under(get_runtime().index_dir(index.pk, index.name))]


def test_processes_whose_pid_files_are_gone_are_still_found_and_not_started_twice(ready_index):
    driver, spec = get_runtime(), services.index_spec(ready_index)
    before = sorted(_index_pids(ready_index))
    for pidfile in (driver.index_dir(spec.index_id, spec.name) / "run").glob("*.pid"):
        pidfile.unlink()

    assert driver.ensure_running(spec) is False
    assert driver.status(spec).is_running
    assert sorted(_index_pids(ready_index)) == before
    assert len(before) == len(spec.containers)


WRAPPER = """#!{python}
# Runs the real program under this name, or, while {marker} exists, hangs without listening.
import os, sys, time
if os.path.basename(sys.argv[0]) == "caddy" and os.path.exists({marker!r}):
    open({marker!r} + ".hanging", "w").close()
    time.sleep(600)
import runpy
real = os.path.join({real!r}, os.path.basename(sys.argv[0]))
with open(real, "rb") as f:
    script = f.read(2) == b"#!"
if script:  # a console script of this virtualenv: run it here
    sys.argv[0] = real
    runpy.run_path(real, run_name="__main__")
else:
    os.execv(real, sys.argv)
"""


def test_a_retry_stops_an_older_copy_that_does_not_hold_its_port(team, lead, settings, tmp_path):
    """A worker killed after starting Caddy but before it listened leaves a copy that does not
    hold its port; the next attempt stops it and starts one that does."""
    real_bin, fake_bin, marker = settings.LOCAL_DRIVER_BIN_DIR, tmp_path / "bin", tmp_path / "hang"
    fake_bin.mkdir()
    wrapper = fake_bin / "caddy"
    python = (Path(real_bin) / "pypi-server").read_text().splitlines()[0][2:]  # the venv's interpreter
    wrapper.write_text(WRAPPER.format(python=python, marker=str(marker), real=str(real_bin)))
    wrapper.chmod(0o755)
    # The index server's `python`, as this virtualenv's own: the same venv seen from tmp_path.
    venv = Path(real_bin).parent
    (tmp_path / "pyvenv.cfg").write_text((venv / "pyvenv.cfg").read_text())
    (tmp_path / "lib").symlink_to(venv / "lib")
    (fake_bin / "python").symlink_to(Path(real_bin) / "python")
    settings.LOCAL_DRIVER_BIN_DIR = fake_bin
    index = PrivateIndex.objects.create(name="slow-caddy", team=team, requested_by=lead)
    services.index_provision_perform(index.pk)
    index.refresh_from_db()
    assert index.state == "ready", index.error
    driver, spec = get_runtime(), services.index_spec(index)
    caddy = next(c for c in spec.containers if c.ports)
    local_processes.stop(driver._container_pids(spec, caddy))

    marker.touch()
    argv, env = driver._local_argv(spec, caddy)
    stale = driver._spawn(spec, caddy, argv, env)  # started, then its worker died
    wait_for_files([tmp_path / "hang.hanging"], timeout=10)
    marker.unlink()
    assert driver._container_pids(spec, caddy) == [stale.pid]
    assert not local_processes.owns_port(stale.pid, spec.placement.https_port)

    assert driver.ensure_running(spec) is True
    assert stale.wait(10) is not None
    new = driver._container_pids(spec, caddy)
    assert len(new) == 1 and local_processes.owns_port(new[0], spec.placement.https_port)
    assert len(_index_pids(index)) == len(spec.containers)
    driver.halt(spec)


def test_teardown_and_stop_local_indexes_stop_processes_nobody_recorded(ready_index, lead, _local_driver_in_tmp):
    folder = get_runtime().index_dir(ready_index.pk, ready_index.name)
    orphan = _orphan(folder)
    deleted_index_orphan = _orphan(_local_driver_in_tmp / "99-long-gone")
    try:
        services.index_delete(index=ready_index, actor=lead)
        services.index_teardown_perform(ready_index.pk)
        ready_index.refresh_from_db()
        assert ready_index.state == "deleted", ready_index.error
        assert orphan.wait(5) is not None
        assert _index_pids(ready_index) == []

        call_command("stop_local_indexes")
        assert deleted_index_orphan.wait(5) is not None
    finally:
        for proc in (orphan, deleted_index_orphan):
            proc.kill()


def test_a_port_held_by_another_process_fails_the_step_naming_that_process(team, lead, settings):
    index = PrivateIndex.objects.create(name="port-taken", team=team, requested_by=lead)
    placement = get_runtime().reserve(index_id=index.pk, name=index.name, previous=None)
    index.deployment = placement.as_dict()
    index.save()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", placement.https_port))
        squatter.listen()
        services.index_provision_perform(index.pk)
    index.refresh_from_db()
    assert index.state == "failed" and index.failed_step == "caddy"
    assert f"Port {placement.https_port}" in index.error and "held by another process" in index.error
    assert _index_pids(index) == []  # the failure halted what had started


def test_a_connect_that_succeeds_is_not_taken_for_the_process_owning_the_port():
    """A connect to a port this test listens on succeeds, but no other pid owns it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        assert local_processes.port_owners(port) == {os.getpid()}
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            assert not local_processes.owns_port(child.pid, port)
        finally:
            child.kill()
            child.wait()


def test_the_default_port_range_stays_below_the_kernels_ephemeral_range():
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    example = Path(__file__).resolve().parent.parent / ".env.example"
    line = next(x for x in example.read_text().splitlines() if x.startswith("LOCAL_DRIVER_PORT_RANGE="))
    first, last = map(int, line.split("=", 1)[1].split("-"))
    assert last < low or first > high


def test_a_port_range_inside_the_ephemeral_range_is_warned_about(settings):
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    settings.PROVISIONING_DRIVER = "provisioning.drivers.local.LocalDriver"
    settings.LOCAL_DRIVER_PORT_RANGE = f"{low + 10}-{low + 20}"
    assert [m.id for m in local_port_range_check(None)] == ["provisioning.W001"]
    settings.LOCAL_DRIVER_PORT_RANGE = "20000-20999"
    assert local_port_range_check(None) == []
