"""The order-form checker: find fields by label, normalise values, check them (FIELDS.md)."""

from mailbot.forms.checker import FormCheck, Problem, check_form
from mailbot.forms.rules import FormRules, load_rules

__all__ = ["FormCheck", "FormRules", "Problem", "check_form", "load_rules"]
