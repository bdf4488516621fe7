"""`enforce-sdk console hash-password`: a hash the store's [[console.users]] accepts."""

from __future__ import annotations

from argon2 import PasswordHasher
from click.testing import CliRunner

from enforce_sdk.cli import main
from enforce_sdk.store.config import StoreConfig
from enforce_sdk.store.console.auth import ConsoleAuth


def test_hash_password_makes_a_hash_the_console_logs_in_with() -> None:
    result = CliRunner().invoke(main, ["console", "hash-password", "--stdin"],
                                input="correct horse battery\n")
    assert result.exit_code == 0, result.output
    digest = result.output.strip()
    assert digest.startswith("$argon2id$")
    assert PasswordHasher().verify(digest, "correct horse battery")
    config = StoreConfig.from_dict({"console": {"users": [
        {"name": "rita", "role": "reviewer", "password_hash": digest}]}})
    auth = ConsoleAuth(config.console)
    assert auth.check_password("rita", "correct horse battery") is not None
    assert auth.check_password("rita", "wrong horse") is None
    assert auth.check_password("nobody", "correct horse battery") is None


def test_short_password_is_refused() -> None:
    result = CliRunner().invoke(main, ["console", "hash-password", "--stdin"], input="short\n")
    assert result.exit_code == 2 and "at least 8 characters" in result.output


def test_plain_password_in_the_config_is_refused() -> None:
    import pytest

    from enforce_sdk._errors import ConfigError

    with pytest.raises(ConfigError, match="plain passwords are not accepted"):
        StoreConfig.from_dict({"console": {"users": [
            {"name": "rita", "role": "reviewer", "password_hash": "hunter22"}]}})
