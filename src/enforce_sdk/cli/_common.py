"""What every store-talking command shares: --url/--token options and exit codes.

Exit codes: 0 ok; 1 some input was rejected (a label failed validation);
2 usage, configuration or connection error. Expected failures print one clear
line on stderr (no traceback); `ENFORCE_DEBUG=1` re-raises them for debugging.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, ParamSpec, TypeVar

import click

from .._errors import (
    AuthError,
    EnforceError,
    StoreError,
    StoreResponseError,
    StoreUnavailableError,
)

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
DEFAULT_URL = "http://127.0.0.1:8080"
URL_ENV = "ENFORCE_STORE_URL"
TOKEN_ENV = "ENFORCE_STORE_TOKEN"

P = ParamSpec("P")
R = TypeVar("R")


class CliError(click.ClickException):
    """An expected failure: shown as `Error: <message>` and exiting with `exit_code`."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares a ClassVar


def fail(message: str, exit_code: int = EXIT_USAGE) -> NoReturn:
    raise CliError(message, exit_code)


def store_options(func: Callable[P, R]) -> Callable[P, R]:
    """Add --url, --token and --timeout (with their environment variables) to a command."""
    func = click.option(
        "--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
        help="Seconds to wait for each store request.",
    )(func)
    func = click.option(
        "--token", envvar=TOKEN_ENV, default=None, metavar="TOKEN",
        help=f"Bearer token for the store (env {TOKEN_ENV}).",
    )(func)
    func = click.option(
        "--url", envvar=URL_ENV, default=DEFAULT_URL, show_default=True, metavar="URL",
        help=f"Base URL of the Label Store (env {URL_ENV}).",
    )(func)
    return func


def describe_store_error(exc: StoreError, url: str | None = None) -> str:
    """One line that says what went wrong talking to the store and what to do about it."""
    where = f" at {url}" if url else ""
    if isinstance(exc, AuthError):
        # A 403 already says what the token may not do (its role or its sources).
        hint = "" if exc.status == 403 else f"; check --token / {TOKEN_ENV}"
        return f"the label store{where} refused the request ({exc.status}): {_detail(exc)}{hint}"
    if isinstance(exc, StoreResponseError):
        return f"the label store{where} answered {exc.status}: {_detail(exc)}"
    if isinstance(exc, StoreUnavailableError):
        return f"cannot reach the label store{where}: {exc}"
    return f"label store error{where}: {exc}"


def _detail(exc: StoreResponseError) -> str:
    detail = exc.detail
    if isinstance(detail, dict):
        message = str(detail.get("message") or detail.get("error") or detail)
        field = detail.get("field")
        index = detail.get("index")
        where = ""
        if index is not None:
            where += f"label {index}"
        if field:
            where += f"{' ' if where else ''}{field}"
        return f"{where}: {message}" if where else message
    return str(detail)


def is_rejection(exc: StoreResponseError) -> bool:
    """Whether the store refused the content (validation, size) rather than the call."""
    return exc.status in (400, 413, 422) and not isinstance(exc, AuthError)


@contextlib.contextmanager
def translate_errors(
    url: str | None = None, *, rejected: tuple[type[EnforceError], ...] = ()
) -> Iterator[None]:
    """The one place the package's expected errors become a CliError with the right exit code.

    Errors of a `rejected` type (and store answers refusing the content) exit
    EXIT_REJECTED; any other expected error EXIT_USAGE. `ENFORCE_DEBUG=1`
    re-raises instead, with the traceback.
    """
    try:
        yield
    except click.ClickException:
        raise
    except (EnforceError, OSError) as exc:
        if os.environ.get("ENFORCE_DEBUG"):
            raise
        message, code = _describe(exc, url, rejected)
        raise CliError(message, code) from exc


def _describe(
    exc: EnforceError | OSError, url: str | None, rejected: tuple[type[EnforceError], ...]
) -> tuple[str, int]:
    """What the user reads (one line) and the exit code, for an expected error."""
    if isinstance(exc, OSError):
        return (f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)), EXIT_USAGE
    code = EXIT_REJECTED if isinstance(exc, rejected) else EXIT_USAGE
    if isinstance(exc, StoreResponseError):
        return describe_store_error(exc, url), EXIT_REJECTED if is_rejection(exc) else code
    if isinstance(exc, StoreError):
        return describe_store_error(exc, url), code
    return str(exc), code


def with_errors(
    func: Callable[P, R] | None = None, *, rejected: tuple[type[EnforceError], ...] = ()
) -> Any:
    """Decorator form of translate_errors, taking the URL from a `url` keyword if present.

    Use bare (`@with_errors`) or with the error types that mean "rejected"
    (`@with_errors(rejected=(ConfigError,))`).
    """

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            url: Any = kwargs.get("url")
            with translate_errors(url if isinstance(url, str) else None, rejected=rejected):
                return func(*args, **kwargs)

        return wrapper

    return decorate if func is None else decorate(func)
