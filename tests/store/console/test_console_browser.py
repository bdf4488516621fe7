"""The console in a real browser: headless Chromium (Debian's package) driven by Playwright.

Against a real store (`enforce-sdk serve --sdk-config docs/examples/enforce.toml`
in a subprocess, SQLite): sign in, look up an entity and read its per-surface
decisions, approve a held label, decide an appeal, run a mass retract; each
step asserts what the page shows and what the store then serves. Screenshots of the main pages go to
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
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.fixtures.store_server import StoreServerFactory, StoreServerProcess
from tests.store.console.conftest import HASHES, PASSWORDS, ROLES, SDK_CONFIG, label

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


STORE_USERS = {"users": [{"name": n, "role": ROLES[n], "password_hash": HASHES[n]}
                         for n in ("vera", "rita", "ada")]}


@pytest.fixture
def store(store_server_factory: StoreServerFactory) -> StoreServerProcess:
    """`enforce-sdk serve --sdk-config docs/examples/enforce.toml` with console people."""
    return store_server_factory(sdk_config=str(SDK_CONFIG), console=STORE_USERS)


def _api(store: StoreServerProcess, method: str, path: str, role: str = "writer",
         **kw: Any) -> Any:
    answer = httpx.request(method, store.url + path, headers=store.headers(role), **kw)
    assert answer.status_code < 300, answer.text
    return answer.json()


def _put(store: StoreServerProcess, *labels: dict[str, Any]) -> None:
    _api(store, "POST", "/v1/labels", json={"labels": list(labels)})


def test_review_journey_in_chromium(store: StoreServerProcess, page: Page,
                                    tmp_path: Path) -> None:
    base = store.url
    _put(
        store,
        label("pin:1233211212", enforcement="limit", confidence=0.93,
              metadata={"model_run": "2026-11-30", "comment": "<script>alert(1)</script>"}),
        label("domain:scam.example", "review_tool/human/rev-0042", "block", "scam",
              metadata={"ticket": "TS-1001"}),
        label("user:42", "bot_detector/automated/stream", "limit", "spam", confidence=0.71),
        *[label(f"pin:{500 + i}", "nsfw_model/automated/v1", "block", "porn",
                confidence=0.6) for i in range(7)],
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
    expect(page.locator('tr[data-surface="search"]')).to_contain_text("search: block (hidden)")
    expect(page.locator('tr[data-surface="profile"]')).to_contain_text(
        "profile: limit (visible)")
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
    served = _api(store, "GET", "/v1/labels/user:42", "reader")
    assert served["pending"] == []
    (approved,) = served["labels"]
    assert approved["source"] == {"system": "console", "type": "human", "name": "rita"}
    assert approved["metadata"]["note"] == "bot ring confirmed by TS-1002"
    page.goto(f"{base}/console/entity/user:42")
    expect(page.locator("#timeline")).to_contain_text("console:rita")

    # an appeal from the product (admin token here; an appellant token in production)
    appeal = _api(store, "POST", "/v1/appeals", "admin", json={
        "entity": "pin:1233211212", "statement": "This is my own travel photo.",
        "ref": "support-5521"})["appeal"]
    page.click("text=Appeals")
    row = page.locator(f'tr[data-appeal="{appeal["id"]}"]')
    expect(row).to_contain_text("This is my own travel photo.")
    shot(page, tmp_path, "appeals")
    row.locator("a").first.click()
    expect(page.locator("#contested")).to_contain_text("spam_domain_model/automated/v3")
    shot(page, tmp_path, "appeal")
    page.fill("input[name=note]", "original content, model false positive")
    page.click("button[value=uphold]")
    expect(page.locator("#done")).to_contain_text("Upheld")
    served = _api(store, "GET", "/v1/labels/pin:1233211212", "reader")["labels"]
    allow = next(lb for lb in served if lb["enforcement"] == "allow")
    assert allow["source"] == {"system": "appeals", "type": "human", "name": "rita"}
    events = _api(store, "GET", "/v1/appeals/events", "admin")["events"]
    assert [e["event"] for e in events] == ["opened", "upheld"]
    page.goto(f"{base}/console/entity/pin:1233211212")
    expect(page.locator('tr[data-surface="home_feed"]')).to_contain_text(
        "home_feed: allow (visible)")  # the resolver's appeal rule
    expect(page.locator("#entity-appeals")).to_contain_text("upheld by console:rita")

    # a model run misfired: an admin retracts its labels by query, dry run first
    page.click("text=Sign out")
    sign_in(page, base, "ada")
    page.click("text=Mass actions")
    page.fill("#query input[name=system]", "nsfw_model")
    page.click("#query button[type=submit]")
    expect(page.locator("#total")).to_have_text("7 matching labels")
    page.fill("input[name=retract_reason]", "nsfw_model v1 misfired on travel photos")
    page.click("#retract button[type=submit]")
    expect(page.locator("#dry-run")).to_contain_text("this retracts 7 labels")
    shot(page, tmp_path, "mass")
    page.click("#confirm")
    expect(page.locator("h1")).to_contain_text("Retraction job")
    for _ in range(100):
        if page.locator("#state").inner_text().startswith("done"):
            break
        page.reload()
    expect(page.locator("#state")).to_have_text("done")
    expect(page.locator("#retracted")).to_have_text("7")
    shot(page, tmp_path, "job")
    left = _api(store, "POST", "/v1/labels/select", "reader",
                json={"where": {"system": "nsfw_model"}})
    assert left["total"] == 0


def test_a_viewer_sees_no_actions_in_chromium(store: StoreServerProcess, page: Page) -> None:
    _put(store, label("user:42", "bot_detector/automated/stream", "limit", "spam"))
    sign_in(page, store.url, "vera")
    page.goto(f"{store.url}/console/queue")
    expect(page.locator("section.item")).to_have_count(1)
    expect(page.locator("button[value=approve]")).to_have_count(0)
