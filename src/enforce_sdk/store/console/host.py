"""What the console's page modules need of the Label Store service and of each other.

Protocols, so the page modules (appeal_pages, mass_pages) and routes need not
import one another (no import circles).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ..checker import LabelChecker
from ..config import StoreConfig
from ..live_policy import LivePolicy
from ..storage.base import AppliedBatch, LabelStorage, WriteKey, WriteOp
from .auth import Person
from .settings import ConsoleRole

Handler = Callable[[Request], Awaitable[Response]]


class ConsoleHost(Protocol):
    """What the console needs of the Label Store service (store/app's LabelStoreService)."""

    config: StoreConfig
    storage: LabelStorage
    checker: LabelChecker
    live_policy: LivePolicy

    def clock(self) -> datetime: ...

    async def write(self, ops: list[WriteOp], actor: str,
                    key: WriteKey | None = None) -> AppliedBatch: ...

    def notify_head(self, head: int) -> None: ...


class PageHost(Protocol):
    """What a page module needs of the console (routes.Console)."""

    service: ConsoleHost
    storage: LabelStorage

    def render(self, request: Request, template: str, person: Person | None,
               http_status: int = 200, **context: Any) -> HTMLResponse: ...

    def require(self, request: Request, role: ConsoleRole) -> Person: ...

    async def form(self, request: Request, person: Person | None,
                   nonce: str | None = None) -> dict[str, str]: ...

    def page(self, handler: Handler) -> Handler: ...
