"""The pages fit a laptop and a phone: at 1280 and 390 px wide (Debian's Chromium through
Playwright) no page scrolls sideways; wide tables scroll inside their panel with the actions
still reachable; the active tab is marked. Screenshots go to test-artifacts/layout/ to be looked at."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone

from packages_ui.models import PackageFile, UnrecordedFile
from portal.audit import audit_record
from provisioning.models import IndexState, PrivateIndex, ProvisioningStep
from tests.dashboard_support import make_fleet

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "layout"
WIDTHS = (1280, 390)

# How wide the document is, and which elements stick out of the viewport without a scrolling parent.
MEASURE = """() => {
    const width = window.innerWidth;
    const outside = [];
    for (const el of document.querySelectorAll("body *")) {
        const box = el.getBoundingClientRect();
        if (box.width === 0 || box.right <= width + 1) continue;
        let scroller = el.parentElement, inside = false;
        while (scroller && scroller !== document.body) {
            const style = getComputedStyle(scroller);
            if (["auto", "scroll", "hidden"].includes(style.overflowX)) { inside = true; break; }
            scroller = scroller.parentElement;
        }
        if (!inside) outside.push(el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
                                 (el.className && typeof el.className === "string" ? "." + el.className : ""));
    }
    return {scrollWidth: document.documentElement.scrollWidth, width, outside: outside.slice(0, 5)};
}"""


@pytest.fixture
def browse(live_server, portal_admin, chromium):
    """Opens a path as the portal admin at a width; saves a full-page screenshot; returns the page
    and its measurements."""
    client = Client()
    client.force_login(portal_admin)
    browser = chromium()
    SHOTS.mkdir(parents=True, exist_ok=True)
    contexts = {}

    def open_page(path: str, width: int, name: str):
        if width not in contexts:
            contexts[width] = browser.new_context(viewport={"width": width, "height": 900})
            contexts[width].add_cookies(
                [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
            )
        page = contexts[width].new_page()
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, path
        page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
        return page, page.evaluate(MEASURE)

    return open_page


@pytest.fixture
def fleet(ready_index, portal_admin) -> list[PrivateIndex]:
    indexes = make_fleet(12, teams=3, prefix="fleet")
    failed = indexes[6]
    failed.error = "The container group could not be created: " + "QuotaExceeded " * 12
    failed.failed_step = "container_group"
    failed.save(update_fields=["error", "failed_step"])
    for n in range(3):
        audit_record(action="package.stored", actor=portal_admin, obj=ready_index,
                     details={"filename": f"a-very-long-project-name-for-layout-{n}-1.0.0-py3-none-any.whl",
                              "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                              "source": "upload"})  # fmt: skip
    audit_record(action="packages.mirror_requested", actor=portal_admin, obj=ready_index,
                 details={"requirements": ["six==1.16.0", "numpy>=2", "pandas"], "python": "3.11",
                          "platform": "manylinux2014_x86_64"})  # fmt: skip
    PackageFile.objects.create(
        index=ready_index, project="a-very-long-project-name-for-layout", version="1.0.0",
        filename="a_very_long_project_name_for_layout-1.0.0-py3-none-any.whl", kind="wheel", size=12345,
        sha256="e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", state="live",
        uploaded_at=timezone.now() - dt.timedelta(minutes=5),
        identity="wheel:a-very-long-project-name-for-layout:1::py3-none-any",
    )  # fmt: skip
    # The package page's other states: a yanked release, a file whose bytes changed on the share,
    # and a file the portal did not write (the Integrity panel).
    PackageFile.objects.create(
        index=ready_index, project="a-very-long-project-name-for-layout", version="0.9.0",
        filename="a_very_long_project_name_for_layout-0.9.0-py3-none-any.whl", kind="wheel", size=12000,
        sha256="d" * 64, state="live", problem="changed", yanked=True, yanked_reason="broken import on Windows",
        identity="wheel:a-very-long-project-name-for-layout:0.9::py3-none-any",
    )  # fmt: skip
    UnrecordedFile.objects.create(
        index=ready_index,
        path="dropped_behind_the_portals_back_with_a_long_name-6.6.6-py3-none-any.whl",
        size=4096,
        sha256="f" * 64,
    )
    return indexes


PAGES = {
    "home": lambda index: "/",
    "dashboard": lambda index: "/admin/dashboard/",
    "dashboard-index": lambda index: f"/admin/dashboard/indexes/{index.pk}/",
    "audit": lambda index: "/audit/",
    "overview": lambda index: f"/indexes/{index.pk}/",
    "packages": lambda index: f"/indexes/{index.pk}/packages/",
    "mirror": lambda index: f"/indexes/{index.pk}/packages/mirror/",
    "tokens": lambda index: f"/indexes/{index.pk}/packages/tokens/",
}


@pytest.mark.parametrize("width", WIDTHS)
def test_pages_do_not_scroll_sideways(browse, fleet, ready_index, width):
    measured = {}
    for name, path in PAGES.items():
        _page, measured[name] = browse(path(ready_index), width, name)

    overflowing = {name: m for name, m in measured.items() if m["scrollWidth"] > m["width"] or m["outside"]}
    assert overflowing == {}


def test_dashboard_actions_are_visible_at_1280_without_scrolling(browse, fleet, ready_index):
    page, _ = browse("/admin/dashboard/", 1280, "dashboard-actions")

    header = page.locator("table.dashboard th", has_text="Actions")
    box = header.bounding_box()
    assert box and box["x"] + box["width"] <= 1280
    table = page.evaluate("() => { const s = document.querySelector('#dashboard-table .table-scroll'); "
                          "return [s.scrollWidth, s.clientWidth]; }")  # fmt: skip
    print(f"dashboard table at 1280: {table[0]} px of content in a {table[1]} px panel")
    assert table[0] <= table[1]  # this fleet's table fits without scrolling at all
    # Dates stay on one line ("2026-12-03", not "2026-/12-03").
    created = page.locator(f"#index-{ready_index.pk} td.date").last
    lines = created.evaluate("el => { const r = document.createRange(); r.selectNodeContents(el); "
                             "return r.getClientRects().length; }")  # fmt: skip
    assert lines == 1


@pytest.mark.parametrize("tab", ["overview", "packages", "mirror", "tokens"])
def test_the_active_tab_is_marked_on_every_tab(browse, ready_index, tab):
    page, _ = browse(PAGES[tab](ready_index), 1280, f"tab-{tab}")

    current = page.locator('.tabs a[aria-current="page"]')
    assert current.count() == 1
    others = page.locator(".tabs a:not([aria-current])").first
    assert current.evaluate("el => getComputedStyle(el).fontWeight") != others.evaluate(
        "el => getComputedStyle(el).fontWeight"
    )


def test_an_index_being_built_shows_no_empty_manage_panel(browse, team, lead):
    index = PrivateIndex.objects.create(name="building", team=team, requested_by=lead, state=IndexState.PROVISIONING)

    page, _ = browse(f"/indexes/{index.pk}/", 1280, "building")

    assert page.locator("h2", has_text="Manage").count() == 0


@pytest.mark.parametrize("width", WIDTHS)
def test_a_new_publish_token_with_its_snippets_fits_and_has_a_copy_button_per_block(browse, ready_index, width):
    page, _ = browse(PAGES["tokens"](ready_index), width, "tokens-before")
    page.fill("input[name=label]", "CI")
    page.select_option("select[name=kind]", "publish")
    page.click("text=Create token")
    page.wait_for_selector(".new-credential")
    page.screenshot(path=str(SHOTS / f"tokens-created-{width}.png"), full_page=True)

    measured = page.evaluate(MEASURE)
    assert measured["scrollWidth"] <= measured["width"] and measured["outside"] == [], measured
    blocks = page.locator(".snippet pre")
    assert blocks.count() >= 8
    assert page.locator(".snippet button.copy").count() == blocks.count()


@pytest.mark.parametrize("width", WIDTHS)
def test_a_step_waiting_to_be_retried_says_so_and_fits(browse, team, lead, width):
    index = PrivateIndex.objects.create(name="retrying", team=team, requested_by=lead, state=IndexState.PROVISIONING)
    done, running = ProvisioningStep.State.DONE, ProvisioningStep.State.RUNNING
    for position, (name, state, attempts, error) in enumerate([
        ("shares", done, 1, ""),
        ("container_group", running, 2, "Attempt 2 of 3 failed: Azure answered 503 ServerBusy "
         "(the container group service is busy in westeurope); retrying in 4 s."),
    ]):  # fmt: skip
        ProvisioningStep.objects.create(
            index=index, operation="provision", position=position, name=name, label=f"Create the {name}",
            state=state, attempts=attempts, error=error, started_at=timezone.now(),
        )  # fmt: skip

    page, measured = browse(f"/indexes/{index.pk}/", width, "retrying")

    assert page.locator(".step-retry").inner_text().startswith("Attempt 2 of 3 failed: Azure answered 503")
    assert page.locator(".step-running .step-attempts").inner_text() == "(2 attempts)"
    assert measured["scrollWidth"] <= measured["width"] and measured["outside"] == [], measured
