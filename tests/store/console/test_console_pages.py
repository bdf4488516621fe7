"""The console's pages over HTTP against a real store: auth, roles, CSRF, escaping, Lookup."""

from __future__ import annotations

import httpx

from enforce_sdk.config.document import EnforcementConfig
from enforce_sdk.store.live_policy import PolicyView
from enforce_sdk.store.server import ThreadedStoreServer
from tests.store.console.conftest import PASSWORDS, label, put_labels, sign_in


def test_pages_need_a_login(console_store: ThreadedStoreServer) -> None:
    for path in ("/console/lookup", "/console/queue", "/console/entity/pin:1"):
        answer = httpx.get(console_store.url + path)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/console/login?next=")
    decide = httpx.post(console_store.url + "/console/queue/decide", data={"action": "reject"})
    assert decide.status_code == 401


def test_wrong_password_is_refused_and_sets_no_session(console_store: ThreadedStoreServer) -> None:
    client = httpx.Client(base_url=console_store.url)
    page = client.get("/console/login")
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    answer = client.post("/console/login", data={"name": "rita", "password": "nope",
                                                  "csrf": csrf})
    assert answer.status_code == 401
    assert "unknown user or wrong password" in answer.text
    assert "enforce_console" not in client.cookies
    assert client.get("/console/lookup", follow_redirects=False).status_code == 303


def test_login_without_the_forms_csrf_token_is_refused(console_store: ThreadedStoreServer) -> None:
    client = httpx.Client(base_url=console_store.url)
    client.get("/console/login")
    answer = client.post("/console/login", data={"name": "rita", "password": PASSWORDS["rita"],
                                                 "csrf": "forged"})
    assert answer.status_code == 403
    assert "CSRF" in answer.text
    assert "enforce_console" not in client.cookies


def test_session_cookie_flags_and_security_headers(console_store: ThreadedStoreServer) -> None:
    session = sign_in(console_store, "vera")
    page = session.client.get("/console/lookup")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src" not in csp  # no script at all
    assert "'unsafe-inline'" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    login = httpx.Client(base_url=console_store.url)
    csrf = login.get("/console/login").text.split('name="csrf" value="')[1].split('"')[0]
    answer = login.post("/console/login", data={"name": "vera", "password": PASSWORDS["vera"],
                                                "csrf": csrf})
    cookie = next(v for k, v in answer.headers.multi_items()
                  if k == "set-cookie" and v.startswith("enforce_console="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie


def test_a_tampered_session_cookie_is_no_session(console_store: ThreadedStoreServer) -> None:
    session = sign_in(console_store, "vera")
    value = session.client.cookies["enforce_console"]
    body, sig = value.split(".")
    forged = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + sig
    answer = httpx.get(console_store.url + "/console/lookup",
                       cookies={"enforce_console": forged})
    assert answer.status_code == 303


def test_lookup_finds_keys_ids_and_urls(console_store: ThreadedStoreServer) -> None:
    session = sign_in(console_store, "vera")
    by_key = session.client.get("/console/lookup", params={"q": " PIN:12 "})
    assert by_key.status_code == 303 and by_key.headers["location"] == "/console/entity/pin:12"
    by_url = session.client.get("/console/lookup", params={"q": "https://www.Example.co.uk/a?b"})
    assert by_url.headers["location"] == "/console/entity/domain:example.co.uk"
    by_id = session.client.get("/console/lookup", params={"q": "42"})
    assert by_id.status_code == 200
    assert 'href="/console/entity/pin:42"' in by_id.text
    assert 'href="/console/entity/user:42"' in by_id.text
    bad = session.client.get("/console/lookup", params={"q": "domain:co.uk"})
    assert bad.status_code == 400 and "public suffix" in bad.text


def test_entity_page_shows_labels_decisions_and_history(console_store: ThreadedStoreServer
                                                        ) -> None:
    put_labels(console_store,
               label("pin:5", enforcement="limit", confidence=0.95, metadata={"run": "2026-01"}),
               label("domain:bad.example", "review_tool/human/rev-1", "block", "scam"))
    session = sign_in(console_store, "vera")
    page = session.client.get("/console/entity/pin:5", params={"domain": "https://bad.example/x"})
    assert page.status_code == 200
    text = page.text
    assert "spam_domain_model / automated / v3" in text and "0.95" in text
    assert "&#34;run&#34;: &#34;2026-01&#34;" in text or "&quot;run&quot;" in text
    # one row per surface of the SDK config, each with its explain() text
    for surface in ("home_feed", "search", "profile"):
        assert f'data-surface="{surface}"' in text
    # home_feed counts a blocked link domain: the domain's label wins there
    assert "pin:5 on home_feed: block (hidden)" in text
    assert "decided by domain:bad.example via domain" in text
    assert 'href="/console/entity/domain:bad.example"' in text
    assert "test-writer" in text  # the audit actor in the timeline


def test_stored_script_renders_as_text(console_store: ThreadedStoreServer) -> None:
    put_labels(console_store, label("pin:666", metadata={"note": "<script>alert(1)</script>",
                                                         "x": "\"><img src=x onerror=alert(2)>"}))
    session = sign_in(console_store, "vera")
    text = session.client.get("/console/entity/pin:666").text
    assert "<script>alert(1)</script>" not in text
    assert "<img src=x" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script" not in text.lower()  # the console has no script of its own either


def test_history_pages(console_store: ThreadedStoreServer) -> None:
    for i in range(25):
        put_labels(console_store, label("pin:9", reason=f"r{i}"))
    session = sign_in(console_store, "vera")
    first = session.client.get("/console/entity/pin:9").text
    assert first.count("<tr><td>") == 20
    older = first.split('id="older" href="')[1].split('"')[0].replace("&amp;", "&")
    second = session.client.get(older).text
    assert second.count("<tr><td>") == 5
    assert 'id="older"' not in second


def test_bad_entity_in_the_path_is_a_clear_error(console_store: ThreadedStoreServer) -> None:
    session = sign_in(console_store, "vera")
    answer = session.client.get("/console/entity/nokind")
    assert answer.status_code == 400
    assert "text/html" in answer.headers["content-type"]


def test_logout_needs_csrf_and_ends_the_session(console_store: ThreadedStoreServer) -> None:
    session = sign_in(console_store, "vera")
    refused = session.client.post("/console/logout", data={"csrf": "x"})
    assert refused.status_code == 403
    done = session.post("/console/logout", {}, from_page="/console/lookup")
    assert done.status_code == 303
    assert session.client.get("/console/lookup").status_code == 303


def test_entity_page_shows_each_reasons_tier_and_description(
        console_store: ThreadedStoreServer) -> None:
    document = {"version": 9, "surfaces": {"home_feed": {}},
                "reasons": {"spam": {"tier": "medium", "description": "unwanted bulk <content>",
                                     "owner": "spam-team"}}}
    config = EnforcementConfig.from_dict(document)
    put_labels(console_store, label("pin:31", reason="spam"),
               label("pin:31", "review_tool/human/rev-1", "limit", "scam"))
    console_store.service.live_policy.set(PolicyView(
        version=9, origin="test", surfaces=config.surfaces, resolvers=config.resolvers,
        document=document, reasons=config.reasons))
    text = sign_in(console_store, "vera").client.get("/console/entity/pin:31").text
    assert "medium: unwanted bulk &lt;content&gt; (spam-team)" in text
    assert text.count("not in the reason registry") == 1  # scam is not registered
