"""The demo's console step: the reviewer console of the demo store, signed in as a reviewer.

The store was started with the SDK config the demo's SDK steps use
(`--sdk-config`), and its config names a demo reviewer, so this step signs in as
a browser would (login form, CSRF token, session cookie), opens the trusted
entity's page and prints what it shows: the per-surface decisions the console
computes with the SDK's own resolver.
"""

from __future__ import annotations

import html
import json
import re

import httpx

from .context import DemoContext
from .sdk_steps import DEMO_CONFIG

DEMO_REVIEWER = "demo-reviewer"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_EXPLAIN = re.compile(r'<pre class="explain">([^<]*)</pre>')


def write_sdk_config(ctx: DemoContext) -> str:
    """The SDK config document the store explains decisions with (the SDK steps' one)."""
    path = ctx.workdir / "sdk-config.json"
    path.write_text(json.dumps(DEMO_CONFIG, indent=2), encoding="utf-8")
    return str(path)


def console_config(ctx: DemoContext) -> str:
    """The store config's [console] part: one demo reviewer with a fresh password."""
    from ..store.console.auth import hash_password

    return ("[console]\n"
            "[[console.users]]\n"
            f'name = "{DEMO_REVIEWER}"\nrole = "reviewer"\n'
            f'password_hash = "{hash_password(ctx.console_password)}"\n\n')


def console_tour(ctx: DemoContext) -> None:
    """Sign in to the console as the demo reviewer and read the trusted entity's page."""
    base = ctx.url
    ctx.out(f"  console: {base}/console/  user {DEMO_REVIEWER}  password {ctx.console_password}")
    with httpx.Client(base_url=base, timeout=10) as browser:
        login = browser.get("/console/login")
        token = _CSRF.search(login.text)
        if token is None:
            ctx.failures.append("the console's login page has no form")
            return
        signed_in = browser.post("/console/login", data={
            "name": DEMO_REVIEWER, "password": ctx.console_password, "csrf": token.group(1),
            "next": f"/console/entity/{ctx.trusted}"}, follow_redirects=True)
        if signed_in.status_code != 200 or DEMO_REVIEWER not in signed_in.text:
            ctx.failures.append(f"the demo reviewer could not sign in ({signed_in.status_code})")
            return
        ctx.out(f"  signed in as {DEMO_REVIEWER}; {base}/console/entity/{ctx.trusted} shows:")
        for block in _EXPLAIN.findall(signed_in.text):
            first = html.unescape(block).splitlines()
            ctx.out("    " + first[0] + (f"  ({first[1].strip()})" if len(first) > 1 else ""))
        queue = browser.get("/console/queue")
        held = queue.text.count('class="item"')
        ctx.out(f"  review queue: {held} held label(s) waiting at {base}/console/queue")
    ctx.out("  (to open it in a browser: enforce-sdk demo --keep-running)")
