"""Drag and drop in Debian's Chromium (Playwright): two good wheels and one bad file dropped on
the drop zone; each shows its own result, and the good ones turn live after the restart."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
from django.test import Client
from playwright.sync_api import expect

from packages_ui.models import PackageFile
from tests.builders import build_wheel

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DROP = """([files]) => {
    const dt = new DataTransfer();
    for (const [name, b64] of files) {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        dt.items.add(new File([bytes], name, {type: "application/octet-stream"}));
    }
    return dt;
}"""


@pytest.fixture
def browser_page(live_server, publisher, tmp_path: Path, chromium):
    client = Client()
    client.force_login(publisher)
    browser = chromium()
    context = browser.new_context()
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Console errors (CSP violations, script errors) and failed answers, by URL; the browser's
    # own "Failed to load resource" lines are covered by the answers.
    page.on(
        "console", lambda m: errors.append(m.text) if m.type == "error" and "Failed to load" not in m.text else None
    )
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.errors = errors
    try:
        yield page
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"))
        raise


def test_dropping_two_good_wheels_and_one_bad_file_shows_each_result_then_live(
    browser_page, live_server, ready_index, run_jobs, tmp_path
) -> None:
    page = browser_page
    good = [build_wheel(tmp_path, "dropped-pkg", version) for version in ("1.0", "2.0")]
    files = [[p.name, base64.b64encode(p.read_bytes()).decode()] for p in good]
    files.append(["notes-1.0-py3-none-any.whl", base64.b64encode(b"this is not a zip").decode()])
    page.goto(f"{live_server.url}/indexes/{ready_index.pk}/packages/")
    page.wait_for_selector("#upload-form.js-upload")  # the upload script ran (CSP allowed it)

    page.dispatch_event("#drop", "drop", {"dataTransfer": page.evaluate_handle(DROP, [files])})

    results = page.locator("#upload-results li.upload-result")
    # Locators, not wait_for_function: the page's CSP forbids the eval that would need.
    finished = page.locator(
        "#upload-results .state-stored, #upload-results .state-live, #upload-results .state-rejected"
    )
    expect(finished).to_have_count(3, timeout=20_000)
    assert results.count() == 3
    bad = page.locator('li[data-filename="notes-1.0-py3-none-any.whl"]')
    assert "Rejected" in bad.inner_text() and "not a valid zip" in bad.inner_text()
    # The restart job runs here (in this process, on the live server's committed data).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and PackageFile.objects.filter(state="stored").exists():
        run_jobs("packages")
        time.sleep(0.2)
    for wheel in good:
        page.wait_for_selector(f'li[data-filename="{wheel.name}"] .state-live', timeout=15_000)
    page.wait_for_selector(f"#listing tr:has-text('{good[1].name}') .state-live", timeout=15_000)
    assert set(PackageFile.objects.values_list("filename", "state")) == {(p.name, "live") for p in good}
    page.screenshot(path=str(tmp_path / "after-drop.png"), full_page=True)  # kept for a human to look at
    # The only failed answer allowed is the bad file's 400 (and Chromium asking for a favicon).
    assert [e for e in page.errors if not e.startswith("400 ") and not e.endswith("/favicon.ico")] == []


def test_keyboard_opens_the_file_picker_and_picked_files_upload(
    browser_page, live_server, ready_index, tmp_path
) -> None:
    page = browser_page
    wheel = build_wheel(tmp_path, "picked-pkg", "1.0")
    page.goto(f"{live_server.url}/indexes/{ready_index.pk}/packages/")
    page.wait_for_selector("#upload-form.js-upload")

    with page.expect_file_chooser() as chooser:
        page.focus("#drop")
        page.keyboard.press("Enter")
    chooser.value.set_files(str(wheel))

    page.wait_for_selector(
        f'li[data-filename="{wheel.name}"] .state-stored, li[data-filename="{wheel.name}"] .state-live'
    )
    assert PackageFile.objects.filter(filename=wheel.name).exists()
