"""A real `manage.py rqworker` subprocess, and the management commands used for automation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from provisioning import services
from provisioning.models import PrivateIndex
from tests.recovery_support import manage_env

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent


def _manage(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.django_db(transaction=True)
def test_a_real_rqworker_process_provisions_a_requested_index(team, lead, _local_driver_in_tmp):
    index = services.index_request(team=team, name="worker-built", size="small", requested_by=lead)
    result = _manage(manage_env(_local_driver_in_tmp), "rqworker", "provisioning", "--burst")
    assert result.returncode == 0, result.stderr[-2000:]
    index.refresh_from_db()
    assert index.state == "ready", index.error
    assert index.steps.filter(state="done").count() == 6


@pytest.mark.django_db(transaction=True)
def test_create_index_waits_and_prints_url_ca_and_credentials_then_delete_index_removes_it(team, _local_driver_in_tmp):
    env = manage_env(_local_driver_in_tmp)
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", "provisioning"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        created = _manage(env, "create_index", "--team", team.slug, "--name", "cli-made", "--wait", "--json")
        assert created.returncode == 0, created.stderr
        output = json.loads(created.stdout)
        assert output["url"].startswith("https://localhost:")
        assert output["upload_url"] == f"{settings.PORTAL_BASE_URL.rstrip('/')}/indexes/{output['id']}/packages/legacy/"
        assert Path(output["ca_path"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
        assert set(output["credentials"]) == {"read", "publish"}
        assert all(c["password"] for c in output["credentials"].values())

        listed = _manage(env, "list_indexes", "--json")
        assert [row["name"] for row in json.loads(listed.stdout)] == ["cli-made"]
        assert json.loads(_manage(env, "list_packages", "cli-made", "--json").stdout) == []
        missing = _manage(env, "list_packages", "no-such-index")
        assert missing.returncode != 0
        assert missing.stderr.strip() == "CommandError: No index named or numbered 'no-such-index'."

        deleted = _manage(env, "delete_index", "cli-made", "--wait")
        assert deleted.returncode == 0, deleted.stderr
        assert PrivateIndex.objects.get(name="cli-made").state == "deleted"
    finally:
        worker.terminate()
        worker.wait(timeout=20)


@pytest.mark.django_db(transaction=True)
def test_create_index_exits_non_zero_with_the_reason_on_stderr(team, _local_driver_in_tmp):
    env = manage_env(_local_driver_in_tmp)
    bad_name = _manage(env, "create_index", "--team", team.slug, "--name", "Bad_Name")
    assert bad_name.returncode != 0 and "lowercase letters" in bad_name.stderr
    no_team = _manage(env, "create_index", "--team", "nobody", "--name", "fine-name")
    assert no_team.returncode != 0 and "No team" in no_team.stderr

    env["LOCAL_DRIVER_BIN_DIR"] = str(_local_driver_in_tmp / "no-binaries")
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", "provisioning"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        failed = _manage(env, "create_index", "--team", team.slug, "--name", "will-fail", "--wait")
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    assert failed.returncode != 0
    assert "failed" in failed.stderr and "is not installed" in failed.stderr
