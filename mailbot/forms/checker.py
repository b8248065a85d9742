"""Check an order form: workbook bytes in, a typed `FormCheck` out.

This is the library function the mail pipeline calls in-process; `mailbot check-form` is a
thin layer over it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mailbot.errors import FormError
from mailbot.forms.rules import CrossRule, FieldRule, FormRules, label_key
from mailbot.forms.values import CHECKS, InvalidValue, clean_text
from mailbot.forms.workbook import SheetContent, read_form


@dataclass(frozen=True)
class Problem:
    field: str  # a FIELDS.md field or rule id, or "form"
    code: str  # missing | invalid | inconsistent | unreadable | not_an_order_form | wrong_version
    message: str
    label: str | None = None  # the field's label in the form's language


@dataclass(frozen=True)
class FormCheck:
    file: str
    complete: bool
    language: str | None
    version: str | None
    problems: tuple[Problem, ...]
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def is_order_form(self) -> bool:
        """False when the file could not be read as this order form at all."""
        return not any(p.field == "form" for p in self.problems)

    def problem_pairs(self) -> list[tuple[str, str]]:
        return [(p.field, p.code) for p in self.problems]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["problems"] = [{"field": p.field, "code": p.code, "message": p.message, "label": p.label}
                            for p in self.problems]
        return data


def check_form(source: Path | str | bytes, name: str | None = None, *, rules: FormRules) -> FormCheck:
    """Check one order form given as a path or as the bytes of the file, by `rules` (load_rules)."""
    if isinstance(source, bytes):
        data, name = source, name or "attachment.xlsx"
    else:
        path = Path(source)
        name = name or str(path)
        try:
            size = path.stat().st_size
            if size > rules.limits.max_file_bytes:
                return _form_problem(name, FormError(
                    "unreadable", f"the file is {size // 1_000_000} MB, too large for an order form"))
            data = path.read_bytes()
        except OSError as exc:
            return _form_problem(name, FormError("unreadable", f"the file cannot be read ({exc.strerror or exc})"))
    try:
        content = read_form(data, rules)
    except FormError as exc:
        return _form_problem(name, exc)
    if content.version is not None and content.version not in rules.accepted_versions:
        accepted = ", ".join(rules.accepted_versions)
        return _form_problem(
            name,
            FormError("wrong_version", f"this is version {content.version} of the order form; "
                                       f"only version {accepted} is accepted: download the current form"),
            language=content.language, version=content.version)
    return check_content(name, content, rules)


def _form_problem(name: str, exc: FormError, language: str | None = None, version: str | None = None) -> FormCheck:
    return FormCheck(file=name, complete=False, language=language, version=version,
                     problems=(Problem("form", exc.code, _sentence(exc.reason)),))


def _sentence(reason: str) -> str:
    text = reason[:1].upper() + reason[1:]
    return text if text.endswith(".") else text + "."


def check_content(name: str, content: SheetContent, rules: FormRules) -> FormCheck:
    """The field and cross-field checks on what was read off the sheet (pure)."""
    lang = content.language or "fr"
    values: dict[str, Any] = {}
    invalid: dict[str, Problem] = {}
    for rule in rules.fields:
        if rule.id not in content.values:
            continue
        raw = content.values[rule.id]
        if rule.need == "optional" and isinstance(raw, str) and label_key(raw) in rules.not_applicable:
            continue  # "n/a", "non assujetti": the field does not apply
        try:
            values[rule.id] = CHECKS[rule.check](raw, **rule.params)
        except InvalidValue:
            invalid[rule.id] = _problem(rules, lang, rule, "invalid", value=clean_text(raw))

    def is_yes(field_id: str) -> bool:
        return values.get(field_id) is True

    replaced = {f for r in rules.rules if r.replaces_missing and not _rule_met(r, values, is_yes) for f in r.fields}
    problems: list[Problem] = []
    for rule in rules.fields:
        if rule.id in invalid:
            problems.append(invalid[rule.id])
        elif rule.id not in values and rule.id not in replaced and _required(rule, is_yes):
            code = "missing" if rule.id in content.found else "missing_row"
            problems.append(_problem(rules, lang, rule, code))
    for cross in rules.rules:
        if problem := _cross_problem(cross, values, is_yes, rules, lang, invalid):
            problems.append(problem)
    order = {f.id: i for i, f in enumerate(rules.fields)}
    problems.sort(key=lambda p: order.get(p.field, order.get(_rule_anchor(rules, p.field), 0)))
    return FormCheck(file=name, complete=not problems, language=content.language, version=content.version,
                     problems=tuple(problems), values=values)


def _rule_anchor(rules: FormRules, rule_id: str) -> str:
    rule = next((r for r in rules.rules if r.id == rule_id), None)
    return rule.fields[0] if rule and rule.fields else rule_id


def _required(rule: FieldRule, is_yes: Any) -> bool:
    return rule.need == "mandatory" or (rule.need == "conditional" and is_yes(rule.when))


def _rule_met(rule: CrossRule, values: dict[str, Any], is_yes: Any) -> bool:
    if rule.kind != "at_least_one":
        return True
    return any(is_yes(f) for f in rule.fields)


def _cross_problem(rule: CrossRule, values: dict[str, Any], is_yes: Any, rules: FormRules, lang: str,
                   invalid: dict[str, Problem]) -> Problem | None:
    if rule.kind == "at_least_one":
        if rule.when is not None and not is_yes(rule.when):
            return None
        if _rule_met(rule, values, is_yes):
            return None
        return Problem(rule.id, "missing", rules.messages[lang][rule.id], rules.label(rule.id, lang))
    # same_enterprise: a valid VAT number whose digits are not the (valid) enterprise number's.
    assert rule.field is not None and rule.other is not None  # required of this kind (rules.py)
    vat, enterprise = values.get(rule.field), values.get(rule.other)
    if vat is None or enterprise is None or rule.field in invalid:
        return None
    if vat.removeprefix("BE") == enterprise:
        return None
    field_rule = rules.field(rule.field)
    return _problem(rules, lang, field_rule, "inconsistent", other=rules.label(rule.other, lang))


def _problem(rules: FormRules, lang: str, rule: FieldRule, code: str, value: str = "", other: str = "") -> Problem:
    hint = rules.hints[lang][rule.check].format(
        choices=", ".join(rule.params.get("choices", [])), length=rule.params.get("length", ""))
    label = rule.labels[lang]
    message = rules.messages[lang][code].format(label=label, value=value[:80], hint=hint, other=other)
    return Problem(rule.id, "missing" if code == "missing_row" else code, message, label)
