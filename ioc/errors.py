"""A user's mistake ends as one line on stderr and exit code 2; a bug keeps its traceback.

    UserError      a flag, variable, file or server the user gave is wrong; the message names it

The packages find most mistakes themselves and keep their own types (the trees in each
``errors.py``). The ``ioc`` command counts these as the user's (:func:`is_mistake`): ingest's
``ConfigError``, every ``AlertsError``, ``PackError``, ``FleetError``, ``RegistryError``, the demo's ``ServerError``,
grafana's ``PushError``, and typer's usage errors (a bad flag value: ``TyperException``). Foreign errors become a
``UserError`` where they happen (:mod:`ioc.preflight`, :func:`blame`, :func:`load_settings`);
:class:`Commands`, the group class of every ``ioc`` typer app, prints them. Anything else is a bug
and propagates with its traceback.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from pydantic import ValidationError
    from pydantic_settings import BaseSettings
    from typer._click import Context  # typer vendors click; typer.Context is a subclass

EXIT_MISTAKE = 2
S = TypeVar("S", bound="BaseSettings")


class UserError(Exception):
    """The user can fix this: the message names the flag, variable, file or server."""


def _mistake_types() -> tuple[type[BaseException], ...]:
    # Imported here: the ``ioc`` command starts without loading every package.
    from alerts.errors import AlertsError
    from contract.fleet import FleetError
    from dashboards.push import PushError
    from ingest.errors import ConfigError
    from ioc.servers import ServerError
    from registry.errors import RegistryError
    from rules.errors import PackError

    return (UserError, AlertsError, ConfigError, FleetError, PackError, PushError, RegistryError, ServerError)


def is_mistake(exc: BaseException) -> bool:
    """Whether ``exc`` is the user's to fix (see the module docstring), not a bug."""
    return isinstance(exc, (UserError, typer.TyperException, *_mistake_types()))


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (a server's log tail is left out: the message names the log)."""
    from ioc.servers import ServerError

    if isinstance(exc, typer.TyperException):
        path = getattr(getattr(exc, "ctx", None), "command_path", None)
        hint = f" (see: {path} --help)" if path else ""
        return " ".join(exc.format_message().split()) + hint
    lines = [" ".join(line.split()) for line in str(exc).splitlines()]
    lines = [line for line in lines if line] or [type(exc).__name__]
    if isinstance(exc, ServerError):
        lines = lines[:1]
    return "; ".join(lines).removesuffix(":")


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with code 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_MISTAKE)


class Commands(TyperGroup):
    """The group class of every ``ioc`` app: checks ``.env`` first, prints a mistake as one line."""

    def invoke(self, ctx: Context) -> Any:
        try:
            if ctx.parent is None:
                from ioc.envcheck import check_env_file

                check_env_file()
            return super().invoke(ctx)
        except typer.Exit:
            raise
        except Exception as exc:
            if not is_mistake(exc):
                raise
            if isinstance(exc, typer.TyperException) and not exc.format_message():
                raise typer.Exit(EXIT_MISTAKE) from None  # no arguments: the help was the answer
            fail(one_line(exc))


@contextmanager
def blame(what: str, *errors: type[Exception]) -> Iterator[None]:
    """Report ``errors`` inside the block (default: an ``OSError``, a file not usable) as ``what``'s fault."""
    caught = errors or (OSError,)
    try:
        yield
    except caught as exc:
        if isinstance(exc, OSError):
            target = f" {exc.filename}" if exc.filename is not None else ""
            raise UserError(f"{what}: cannot use{target} ({exc.strerror or exc})") from exc
        raise UserError(f"{what}: {one_line(exc)}") from exc


def load_settings(cls: type[S], *, flags: Mapping[str, str], **options: Any) -> S:
    """``cls`` from the flags given (``options``; None: not given), the rest from ``IOC_*`` variables, ``.env``
    and defaults; invalid: a :class:`UserError` naming each flag (``flags``: field → flag) and its variable."""
    from pydantic import ValidationError

    given = {k: v for k, v in options.items() if v is not None}
    try:
        return cls(**given)
    except ValidationError as exc:
        raise settings_error(exc, cls, flags=flags, given=given) from None


def settings_error(
    exc: ValidationError, cls: type[BaseSettings], *, flags: Mapping[str, str], given: Collection[str] = ()
) -> UserError:
    """One line for invalid settings: per problem the flag (from ``flags``), the variable and where it was set."""
    from ioc.envcheck import env_file_line

    prefix = str(cls.model_config.get("env_prefix", ""))
    problems = []
    for e in exc.errors():
        field = str(e["loc"][0]) if e["loc"] else ""
        variable = (prefix + field).upper() if field else ""
        names = f"{flags[field]} ({variable})" if field in flags else variable or "settings"
        source = ""
        if field and field not in given:
            if variable in os.environ:
                source = " [set in the environment]"
            elif (line := env_file_line(variable)) is not None:
                source = f" [set in .env line {line}]"
        problems.append(f"{names}: {str(e['msg']).removeprefix('Value error, ')}{source}")
    return UserError("; ".join(problems))
