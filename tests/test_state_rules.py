"""Each index state rule is defined once, in provisioning/models.py, and the rules agree with the
transitions they allow."""

from __future__ import annotations

import re
from pathlib import Path

from provisioning import models
from provisioning.models import IndexOperation, IndexState, PrivateIndex

ROOT = Path(__file__).resolve().parent.parent
PRODUCT_PACKAGES = ("portal", "provisioning", "packages_ui")
STATE_NAMES = "|".join(member.name for member in IndexState)
# Two index states side by side in one expression: a state set written out again.
RESTATED_SET = re.compile(rf"IndexState\.({STATE_NAMES})\s*[,|)]\s*IndexState\.({STATE_NAMES})")
STATE_LITERAL_LIST = re.compile(r"state__in=\[\s*\"")


def _product_modules() -> list[Path]:
    return [
        path
        for package in PRODUCT_PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts and path != ROOT / "provisioning" / "models.py"
    ]


def test_no_module_but_the_models_writes_out_a_set_of_index_states():
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in _product_modules()
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if RESTATED_SET.search(line) or STATE_LITERAL_LIST.search(line)
    ]
    assert offenders == []


def test_templates_ask_the_index_about_its_state_instead_of_comparing_strings():
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in (ROOT / "templates").rglob("*.html")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if re.search(r"index\.state\s*==", line) or "driver_name" in line
    ]
    assert offenders == []


def test_what_a_lead_may_ask_for_is_a_transition_the_state_allows():
    for state in models.RESTARTABLE_STATES:
        assert IndexState.RESTARTING in models.TRANSITIONS[state]
    for state in models.DELETABLE_STATES:
        assert IndexState.DELETING in models.TRANSITIONS[state]
    for state in models.RETRYABLE_STATES:
        for operation in (IndexOperation.PROVISION, IndexOperation.TEARDOWN):
            assert models.WORKING_STATE[operation] in models.TRANSITIONS[state]


def test_every_active_state_has_the_operation_whose_job_moves_it_on():
    assert set(models.OPERATION_OF_ACTIVE_STATE) == models.ACTIVE_STATES
    for operation, state in models.WORKING_STATE.items():
        assert models.OPERATION_OF_ACTIVE_STATE[state] == operation
        assert models.TRANSITIONS[state] - {IndexState.FAILED}, f"{state} must lead somewhere but failed"


def test_a_gone_index_holds_no_name_and_leads_nowhere():
    assert models.NAME_HOLDING_STATES.isdisjoint(models.GONE_STATES)
    assert models.NAME_HOLDING_STATES | models.GONE_STATES == set(IndexState.values)
    for state in models.GONE_STATES:
        assert models.TRANSITIONS[state] == frozenset()
    constraint = next(c for c in PrivateIndex._meta.constraints if c.name == "index_name_unique_while_it_exists")
    assert sorted(constraint.condition.children[0][1]) == sorted(models.GONE_STATES)


def test_an_index_that_serves_is_also_checked_and_billed():
    assert models.SERVING_STATES <= models.CHECKED_STATES <= models.BILLED_STATES
    assert models.BILLED_STATES.isdisjoint(models.GONE_STATES)


def test_a_retry_resumes_the_operation_that_failed():
    index = PrivateIndex(state=IndexState.FAILED, failed_operation=IndexOperation.TEARDOWN)
    assert index.retry_operation == IndexOperation.TEARDOWN
    for failed in (IndexOperation.PROVISION, IndexOperation.RESTART, ""):
        index.failed_operation = failed
        assert index.retry_operation == IndexOperation.PROVISION
