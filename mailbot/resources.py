"""The files mailbot ships inside its package, found with importlib.resources wherever it is
installed: the rules (mailbot/rules/), the texts it sends (mailbot/templates/), the reference
order forms (mailbot/reference/) and the sandbox's configuration (mailbot/sandbox.toml).

The configuration's [files] keys replace a rules file or the templates; the shipped files are
only the defaults of those keys. Nothing here is read from the working directory.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

PACKAGE: Traversable = files("mailbot")
RULES: Traversable = PACKAGE / "rules"
TEMPLATES: Traversable = PACKAGE / "templates"
REFERENCE: Traversable = PACKAGE / "reference"
SANDBOX_CONFIG: Traversable = PACKAGE / "sandbox.toml"


def rules_file(name: str) -> Traversable:
    """A rules file as shipped, e.g. rules_file("robots.toml")."""
    return RULES / name
