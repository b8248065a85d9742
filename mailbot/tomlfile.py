"""Read a TOML file of rules or configuration, with one clear error naming the file; the helpers
the rules loaders share (`require` a typed key, `load_toml` a file into its validator)."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TypeVar

from mailbot.errors import ConfigError, RulesError

T = TypeVar("T")


def read_toml(path: Path | Traversable, what: str = "rules file",
              error: type[ConfigError] = RulesError) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise error(f"{path}: the {what} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: the {what} cannot be read ({exc.__class__.__name__})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML ({exc})") from exc


def load_toml(path: Path | str | None, shipped: Traversable, parse: Callable[[dict[str, Any], str], T],
              what: str = "rules file") -> T:
    """Read `path` (the file shipped in the package when None) and hand its data to
    `parse(data, source)`, the source being the path, so that every error names the file."""
    source = Path(path) if path is not None else shipped
    return parse(read_toml(source, what), str(source))


def require(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    """`table[key]`, which must be a `kind` (a bool is not an int); else a RulesError naming
    `where` (the entry of the file it is in)."""
    if key not in table:
        raise RulesError(f"{where}: the key '{key}' is missing")
    value = table[key]
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise RulesError(f"{where}: '{key}' must be a {kind.__name__}, not {value!r}")
    return value
