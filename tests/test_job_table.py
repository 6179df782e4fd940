"""Every job is declared once, in portal/job_table.py, and everything that enqueues or schedules a
job (services, checks, packages, the reconcile, the scheduler) does it through portal/queueing.py
from that table: queue, timeout, TTLs and job id are never restated anywhere else."""

from __future__ import annotations

import ast
from pathlib import Path

import django_rq
import pytest
import yaml
from django.conf import settings as django_settings
from rq.cron import CronScheduler

from packages_ui import services as package_services
from portal.job_table import JOBS, QUEUES
from portal.queueing import job_timeout
from provisioning import checks, operations, services
from provisioning.models import PrivateIndex
from provisioning.spec import Placement

ROOT = Path(__file__).resolve().parent.parent
APPS = ("portal", "provisioning", "packages_ui")
# What only the table states and only portal/queueing.py passes to RQ.
JOB_OPTIONS = {"job_timeout", "result_ttl", "failure_ttl"}
ENQUEUEING_CALLS = {"enqueue", "enqueue_call", "enqueue_at", "enqueue_in", "enqueue_many"}
THE_TABLE_AND_ITS_USER = {Path("portal/job_table.py"), Path("portal/queueing.py")}


def _sources() -> list[Path]:
    return [
        path
        for app in APPS
        for path in sorted((ROOT / app).rglob("*.py"))
        if "migrations" not in path.parts and path.relative_to(ROOT) not in THE_TABLE_AND_ITS_USER
    ]


def test_rq_queues_are_the_tables_queues_and_every_job_runs_on_one_of_them():
    assert set(django_settings.RQ_QUEUES) == set(QUEUES)
    assert {kind.queue for kind in JOBS.values()} <= set(QUEUES)


def test_every_job_in_the_table_is_a_function_of_a_jobs_module():
    for path in JOBS:
        module, _, name = path.rpartition(".")
        assert module.endswith("jobs"), path
        tree = ast.parse((ROOT / Path(*module.split("."))).with_suffix(".py").read_text())
        assert name in {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}, path


def test_no_module_but_queueing_enqueues_schedules_or_states_a_queue_or_timeout_and_no_job_is_decorated():
    offences = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Call):
                called = ast.unparse(node.func)
                if called.rpartition(".")[2] in ENQUEUEING_CALLS or called == "cron.register":
                    offences.append(f"{where} calls {called}()")
                offences += [f"{where} passes {kw.arg}=" for kw in node.keywords if kw.arg in JOB_OPTIONS]
            if isinstance(node, ast.ImportFrom) and node.module == "django_rq":
                offences += [f"{where} imports django_rq.job" for alias in node.names if alias.name == "job"]
    assert offences == []


@pytest.mark.django_db
def test_every_job_the_services_enqueue_gets_the_queue_timeout_ttls_and_id_of_its_table_entry(
    team, lead, django_capture_on_commit_callbacks, settings
):
    settings.PACKAGES_REFRESH_JOB_TIMEOUT_SECONDS = 123  # a timeout held in a setting is read from it
    placement = Placement(hostname="localhost", https_port=1, http_port=2, server_port=3, tls="internal")
    ready = PrivateIndex.objects.create(
        name="ready", team=team, requested_by=lead, state="ready", deployment=placement.as_dict()
    )
    failed = PrivateIndex.objects.create(name="failed", team=team, requested_by=lead, state="failed")
    stuck = PrivateIndex.objects.create(name="stuck", team=team, requested_by=lead, state="deleting")
    with django_capture_on_commit_callbacks(execute=True):
        requested = services.index_request(team=team, name="asked-for", size="small", requested_by=lead)
        services.index_restart(index=ready, actor=lead)
    with django_capture_on_commit_callbacks(execute=True):
        services.index_delete(index=failed, actor=lead)
        operations.index_reconcile()  # queues the stuck teardown again
        checks.index_check_enqueue(index=ready)
        package_services.integrity_check_enqueue(index=ready)
        package_services.refresh_request(index=ready)
        package_services.mirror_request(
            index=ready, requirements="demo==1", python_version="3.12", platform="manylinux2014_x86_64", actor=lead
        )

    jobs = [job for name in QUEUES for job in django_rq.get_queue(name).get_jobs()]
    assert sorted(job.func_name for job in jobs) == sorted([
        "provisioning.jobs.provision_index", "provisioning.jobs.restart_index", "provisioning.jobs.teardown_index",
        "provisioning.jobs.teardown_index", "provisioning.check_jobs.check_index",
        "packages_ui.jobs.check_package_integrity", "packages_ui.jobs.refresh_packages",
        "packages_ui.jobs.mirror_packages",
    ])  # fmt: skip
    for job in jobs:
        kind = JOBS[job.func_name]
        assert (job.origin, job.timeout, job.result_ttl, job.failure_ttl) == (
            kind.queue, job_timeout(kind), kind.result_ttl, kind.failure_ttl,
        ), job.func_name  # fmt: skip
        if kind.job_id:
            assert job.id == kind.job_id.format(*job.args), job.func_name
    assert {job.id for job in jobs} >= {f"index-{requested.pk}-provision", f"index-{stuck.pk}-teardown"}
    assert next(j for j in jobs if j.func_name.endswith("refresh_packages")).timeout == 123


def test_the_scheduler_registers_each_periodic_job_with_its_table_entry(settings):
    settings.CERT_CHECK_TIMEOUT_SECONDS = 5.0
    scheduler = CronScheduler(connection=django_rq.get_connection("default"))
    scheduler.load_config_from_file("provisioning.cron")

    registered = scheduler.get_jobs()
    assert len(registered) == 3
    for cron_job in registered:
        kind = JOBS[cron_job.func_name]
        assert cron_job.queue_name == kind.queue
        assert cron_job.job_options == {
            "job_timeout": job_timeout(kind), "result_ttl": kind.result_ttl, "failure_ttl": kind.failure_ttl,
        }, cron_job.func_name  # fmt: skip
    reconcile = JOBS["provisioning.jobs.reconcile_indexes"]
    assert job_timeout(reconcile) == 600  # was 600 in the schedule and 1800 on the unused decorator


def test_the_deployed_worker_listens_on_every_queue_of_the_table_in_its_order():
    worker = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["worker"]["command"]
    assert [arg for arg in worker if arg in QUEUES] == list(QUEUES)
