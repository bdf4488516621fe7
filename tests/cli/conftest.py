"""CLI tests use the real Label Store subprocess from tests/fixtures/store_server.py."""

from tests.fixtures.store_server import store_server, store_server_factory

__all__ = ["store_server", "store_server_factory"]
