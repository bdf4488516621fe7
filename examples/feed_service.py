"""A feed service that hides what trust & safety says to hide: enforce_sdk in a FastAPI app.

`GET /feed?page=N` filters a page of candidate pins through AsyncEnforcementClient
(an `async def` endpoint, on the event loop); `GET /feed-sync?page=N` does the
same through EnforcementClient (a `def` endpoint, which FastAPI runs in its
thread pool). Both clients are made once, outside any event loop, when the app
is created; that also makes the app safe under a pre-fork server (`gunicorn
--preload`): each worker re-creates the clients' connections and threads.

Run against a Label Store:

    ENFORCE_STORE_URL=http://127.0.0.1:8080 ENFORCE_STORE_TOKEN=<reader token> \\
        uvicorn examples.feed_service:app

`ENFORCE_CONFIG` names the SDK config file (default docs/examples/enforce.toml).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from enforce_sdk import AsyncEnforcementClient, EnforcementClient

PAGE_SIZE = 25
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "docs" / "examples" / "enforce.toml"
Item = dict[str, str]


def candidates(page: int) -> list[Item]:
    """The page of pins the feed would show before enforcement (a stand-in for ranking)."""
    first = page * PAGE_SIZE
    return [
        {
            "id": f"pin:{i}",
            "link": f"https://site{i % 7}.example/p/{i}",
            "creator": str(1000 + i % 11),
        }
        for i in range(first, first + PAGE_SIZE)
    ]


def links(item: Item) -> dict[str, str]:
    """The linked entities whose labels count too: the pin's link domain and its creator."""
    return {"domain": item["link"], "creator": item["creator"]}


def create_app(store_url: str, config: Any, token: str | None = None) -> FastAPI:
    # --8<-- [start:feed]
    enforcement = AsyncEnforcementClient(store_url, config, token=token)
    enforcement_sync = EnforcementClient(store_url, config, token=token)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await enforcement.aclose()
        enforcement_sync.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/feed")
    async def feed(page: int = 0) -> dict[str, Any]:
        items = candidates(page)
        shown = await enforcement.filter(items, "home_feed", key=lambda it: it["id"], related=links)
        return {"items": shown, "hidden": len(items) - len(shown)}

    @app.get("/feed-sync")
    def feed_sync(page: int = 0) -> dict[str, Any]:
        items = candidates(page)
        shown = enforcement_sync.filter(items, "home_feed", key=lambda it: it["id"], related=links)
        return {"items": shown, "hidden": len(items) - len(shown)}

    # --8<-- [end:feed]

    return app


def __getattr__(name: str) -> Any:
    """`app` for `uvicorn examples.feed_service:app`, configured from the environment."""
    if name == "app":
        return create_app(
            os.environ["ENFORCE_STORE_URL"],
            os.environ.get("ENFORCE_CONFIG", str(DEFAULT_CONFIG)),
            token=os.environ.get("ENFORCE_STORE_TOKEN"),
        )
    raise AttributeError(name)
