"""Read a TOML file of rules or configuration, with one clear error naming the file."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from mailbot.errors import ConfigError, RulesError


def read_toml(path: Path, what: str = "rules file", error: type[ConfigError] = RulesError) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise error(f"{path}: the {what} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: the {what} cannot be read ({exc.__class__.__name__})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML ({exc})") from exc
