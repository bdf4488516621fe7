"""What the demo's steps share: paths, tokens, the running store and the sample."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .._errors import EnforceError
from ..model.label import Label
from ..store_client.client import LabelStoreClient
from .store_process import StoreProcess

Out = Callable[[str], None]


@dataclass
class DemoContext:
    """Everything the steps share: paths, tokens, the running store, the sample."""

    workdir: Path
    count: int
    seed: int
    out: Out
    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    writer_token: str = field(default_factory=lambda: "w-" + secrets.token_urlsafe(24))
    reader_token: str = field(default_factory=lambda: "r-" + secrets.token_urlsafe(24))
    console_password: str = field(default_factory=lambda: secrets.token_urlsafe(9))
    labels: list[Label] = field(default_factory=list)
    trusted: str = ""
    inputs: dict[str, Path] = field(default_factory=dict)
    store: StoreProcess | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def config_path(self) -> Path:
        return self.workdir / "store.toml"

    @property
    def url(self) -> str:
        if self.store is None:
            raise EnforceError("the demo store is not running")
        return self.store.url

    def reader(self) -> LabelStoreClient:
        return LabelStoreClient(self.url, token=self.reader_token, wire="json")

    def writer(self) -> LabelStoreClient:
        return LabelStoreClient(self.url, token=self.writer_token)


@dataclass(frozen=True)
class Step:
    title: str
    run: Callable[[DemoContext], None]
