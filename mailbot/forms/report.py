"""How a form check is shown to a person on the command line."""

from __future__ import annotations

from mailbot.forms.checker import FormCheck

_HEAD = {
    "fr": ("complet", "incomplet : {n} point(s) à corriger"),
    "nl": ("volledig", "onvolledig: {n} punt(en) te verbeteren"),
    None: ("complete", "not readable as the order form"),
}


def render_text(check: FormCheck) -> str:
    """A readable report: complete or not, then each problem with its label and what to fix."""
    done, todo = _HEAD.get(check.language, _HEAD[None]) if check.is_order_form else _HEAD[None]
    about = ", ".join(x for x in (check.language and check.language.upper(),
                                  check.version and f"v{check.version}") if x)
    head = f"{check.file}" + (f" ({about})" if about else "")
    lines = [f"{head}: " + (done if check.complete else todo.format(n=len(check.problems)))]
    for p in check.problems:
        lines.append(f"  - [{p.field}: {p.code}] {p.message}")
    return "\n".join(lines)
