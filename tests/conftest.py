"""Test-suite wide pytest plugins: each module provides the fixtures of one component."""

pytest_plugins = ["tests.fixtures.sqlite_storage", "tests.fixtures.redis_cluster",
    "tests.fixtures.store_server",
    "tests.fixtures.zookeeper",
    "enforce_sdk.testing.pytest_plugin",  # the test kit's enforce_labels fixture
]
