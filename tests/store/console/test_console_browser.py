"""The console in a real browser: headless Chromium (Debian's package) driven by Playwright.

Against a real store (uvicorn on a thread, SQLite): sign in, look up an entity and
read its per-surface decisions, approve a held label; each step asserts what the
page shows and what the store then serves. Screenshots of the main pages go to
the test's tmp dir, and to $ENFORCE_CONSOLE_SCREENSHOTS when set (docs/console/
holds the current ones: `ENFORCE_CONSOLE_SCREENSHOTS=docs/console pytest ...`).

Playwright uses the system Chromium (no browser download). If Chromium is
missing or cannot start, these tests fail: they never skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from enforce_sdk.store.server import ThreadedStoreServer
from tests.store.console.conftest import PASSWORDS, WRITER_TOKEN, label, put_labels

CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> str:
    configured = os.environ.get("ENFORCE_CHROMIUM")
    for path in ((configured,) if configured else CANDIDATES):
        if path and os.access(path, os.X_OK):
            return path
    found = shutil.which("chromium")
    if found:
        return found
    pytest.fail("Chromium is not installed (Debian: apt-get install chromium; ./dev setup "
                "installs it); the console's browser tests need it")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=chromium_path(), headless=True,
                                  args=["--no-sandbox"])
        except Exception as exc:  # fail, never skip: the console is tested in a browser
            pytest.fail(f"Chromium did not start: {exc}")
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    dialogs: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    yield pg
    context.close()
    assert dialogs == [], f"a script ran in the console: {dialogs}"


def shot(page: Page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    target = os.environ.get("ENFORCE_CONSOLE_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


def sign_in(page: Page, base: str, name: str) -> None:
    page.goto(f"{base}/console/")
    expect(page.locator("h1")).to_have_text("Sign in")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    page.click("button[type=submit]")
    expect(page.locator("#who")).to_contain_text(name)


def _served(server: ThreadedStoreServer, entity: str) -> dict[str, list[dict[str, object]]]:
    answer = httpx.get(f"{server.url}/v1/labels/{entity}",
                       headers={"Authorization": f"Bearer {WRITER_TOKEN}"})
    assert answer.status_code == 200
    body: dict[str, list[dict[str, object]]] = answer.json()
    return body


def test_review_journey_in_chromium(console_store: ThreadedStoreServer, page: Page,
                                    tmp_path: Path) -> None:
    base = console_store.url
    put_labels(
        console_store,
        label("pin:1233211212", enforcement="limit", confidence=0.93,
              metadata={"model_run": "2026-11-30", "comment": "<script>alert(1)</script>"}),
        label("domain:scam.example", "review_tool/human/rev-0042", "block", "scam",
              metadata={"ticket": "TS-1001"}),
        label("user:42", "bot_detector/automated/stream", "limit", "spam", confidence=0.71),
    )

    # sign in
    page.goto(f"{base}/console/lookup")
    expect(page).to_have_url(f"{base}/console/login?next=%2Fconsole%2Flookup")
    shot(page, tmp_path, "login")
    page.fill("input[name=name]", "rita")
    page.fill("input[name=password]", PASSWORDS["rita"])
    page.click("button[type=submit]")
    expect(page.locator("#who")).to_have_text("rita (reviewer)")

    # look up a pin with its link domain: labels, decisions per surface, history
    page.fill("input[name=q]", "PIN:1233211212")
    page.fill("input[name=domain]", "https://www.scam.example/offer")
    page.click("form.stack button[type=submit]")
    expect(page.locator("#entity")).to_have_text("pin:1233211212")
    labels = page.locator("#labels tbody tr")
    expect(labels).to_have_count(1)
    expect(labels.first).to_contain_text("spam_domain_model / automated / v3")
    expect(labels.first).to_contain_text("<script>alert(1)</script>")  # shown as text
    home = page.locator('tr[data-surface="home_feed"]')
    expect(home).to_contain_text("pin:1233211212 on home_feed: block (hidden)")
    expect(home).to_contain_text("decided by domain:scam.example via domain")
    search = page.locator('tr[data-surface="search"]')
    expect(search).to_contain_text("search: block (hidden)")
    profile = page.locator('tr[data-surface="profile"]')
    expect(profile).to_contain_text("profile: limit (visible)")
    expect(page.locator("#timeline tbody tr")).to_have_count(1)
    expect(page.locator("#timeline")).to_contain_text("test-writer")
    shot(page, tmp_path, "entity")

    # the linked domain is one click away
    page.click("a.link-entity")
    expect(page.locator("#entity")).to_have_text("domain:scam.example")
    expect(page.locator("#labels")).to_contain_text("TS-1001")

    # approve the held label in the queue
    page.click("text=Review queue")
    item = page.locator('section.item[data-entity="user:42"]')
    expect(item).to_contain_text("bot_detector/automated/stream")
    shot(page, tmp_path, "queue")
    item.locator("input[name=note]").fill("bot ring confirmed by TS-1002")
    item.locator("button[value=approve]").click()
    expect(page.locator("#done")).to_contain_text("Approved")
    expect(page.locator('section.item[data-entity="user:42"]')).to_have_count(0)
    served = _served(console_store, "user:42")
    assert served["pending"] == []
    (approved,) = served["labels"]
    assert approved["source"] == {"system": "console", "type": "human", "name": "rita"}
    assert approved["metadata"] == {"review": "approve", "confirms":
                                    "bot_detector/automated/stream",
                                    "note": "bot ring confirmed by TS-1002"}

    # the entity page's history names the reviewer
    page.goto(f"{base}/console/entity/user:42")
    expect(page.locator("#timeline")).to_contain_text("console:rita")
    expect(page.locator("#reviews")).to_contain_text("bot ring confirmed by TS-1002")


def test_a_viewer_sees_no_actions_in_chromium(console_store: ThreadedStoreServer, page: Page
                                              ) -> None:
    put_labels(console_store, label("user:42", "bot_detector/automated/stream", "limit", "spam"))
    sign_in(page, console_store.url, "vera")
    page.goto(f"{console_store.url}/console/queue")
    expect(page.locator("section.item")).to_have_count(1)
    expect(page.locator("button[value=approve]")).to_have_count(0)
