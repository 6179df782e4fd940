"""The apps build on each other one way: provisioning and packages_ui on portal, never back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.urls import reverse

from provisioning.models import PrivateIndex

ROOT = Path(__file__).resolve().parent.parent


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def test_the_portal_app_imports_neither_provisioning_nor_packages_ui_not_even_inside_functions():
    offending = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in (ROOT / "portal").rglob("*.py")
        for module in _imported_modules(path)
        if module.split(".")[0] in {"provisioning", "packages_ui"}
    }
    assert offending == set()


def test_no_product_module_imports_the_test_builders():
    offending = {
        str(path.relative_to(ROOT))
        for app in ("portal", "provisioning", "packages_ui")
        for path in (ROOT / app).rglob("*.py")
        if any(module.split(".")[0] == "tests" for module in _imported_modules(path))
    }
    assert offending == set()


@pytest.mark.django_db
def test_a_dashboard_action_returns_only_to_a_path_on_the_portal_not_to_an_absolute_url(
    portal_admin_client, team, lead
):
    ready = PrivateIndex.objects.create(name="ready-one", team=team, requested_by=lead, state="ready")

    response = portal_admin_client.post(
        reverse("dashboard_restart", args=[ready.pk]), {"next": "http://testserver/admin/dashboard/?q=x"}
    )

    assert response["Location"] == reverse("dashboard")
