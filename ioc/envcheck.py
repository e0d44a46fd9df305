"""The ``.env`` file every settings class reads (from the working directory), checked before a command runs.

python-dotenv skips a line it cannot parse with a warning, so a typo would leave that setting at its
default; :func:`check_env_file` refuses such a file instead. ``.env.example`` is :mod:`ioc.envfile`'s.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from dotenv.parser import Binding, parse_stream

from ioc.errors import UserError

ENV_FILE = Path(".env")


def _bindings(path: Path) -> list[Binding]:
    return list(parse_stream(io.StringIO(path.read_text(encoding="utf-8"))))


def check_env_file(path: Path = ENV_FILE) -> None:
    """Raise :class:`UserError` for an unreadable ``.env`` or one with a line that is not ``NAME=value``."""
    if not path.exists():
        return
    try:
        bindings = _bindings(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the env file ({exc})") from exc
    for b in bindings:
        if b.error:
            raise UserError(f"{path} line {b.original.line}: not NAME=value: {b.original.string.strip()[:60]!r}")


def env_file_line(variable: str, path: Path = ENV_FILE) -> int | None:
    """The line of ``path`` that sets ``variable``, if one does."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        for b in _bindings(path):
            if b.key == variable:
                return b.original.line
    return None
