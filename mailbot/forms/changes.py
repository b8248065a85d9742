"""What changed between a dossier's previous order form and a corrected one, and which of those
changes a person must confirm (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailbot.forms import FormCheck


@dataclass(frozen=True)
class FormChanges:
    fixed: tuple[str, ...]  # wrong before, right now
    still_wrong: tuple[str, ...]
    newly_wrong: tuple[str, ...]  # fine before, wrong now
    changed: tuple[str, ...]  # fine before, fine now, but another value

    def __bool__(self) -> bool:
        return any((self.fixed, self.still_wrong, self.newly_wrong, self.changed))

    def summary(self) -> str:
        parts = [f"{name}: {', '.join(ids)}" for name, ids in
                 (("fixed", self.fixed), ("still wrong", self.still_wrong), ("newly wrong", self.newly_wrong),
                  ("changed", self.changed)) if ids]
        return "; ".join(parts)


def compare(before: FormCheck, after: FormCheck) -> FormChanges:
    """Field ids, in the order of the form, of what the corrected form changed."""
    wrong_before = {p.field for p in before.problems}
    wrong_after = {p.field for p in after.problems}
    order = list(dict.fromkeys([*(p.field for p in before.problems), *(p.field for p in after.problems),
                                *before.values, *after.values]))
    changed = tuple(f for f in order if f not in wrong_before and f not in wrong_after
                    and before.values.get(f) != after.values.get(f))
    return FormChanges(
        fixed=tuple(f for f in order if f in wrong_before and f not in wrong_after),
        still_wrong=tuple(f for f in order if f in wrong_before and f in wrong_after),
        newly_wrong=tuple(f for f in order if f in wrong_after and f not in wrong_before),
        changed=changed,
    )


# The fields a later order form may not change on its own once the dossier had a complete form:
# where the money goes, who is told the access and who signs. A forged or hijacked mail that
# changes them is the business-e-mail-compromise path, so a person confirms each change. Code,
# not rules/: this is a safeguard staff must not be able to switch off by editing a file.
CONFIRMED_FIELDS = ("settlement_iban", "account_holder", "business_contact_email", "technical_contact_email",
                    "billing_email", "signatory_name", "signatory_function")


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: Any  # None: the dossier had no value for it
    new: Any


def changes_to_confirm(known: Mapping[str, Any], after: FormCheck,
                       fields: tuple[str, ...] = CONFIRMED_FIELDS) -> tuple[FieldChange, ...]:
    """The fields of `fields` to which `after` gives a value other than the dossier's (`known`).
    A value that went missing or wrong is no change to confirm: the form is incomplete and its
    answer says so; case and spacing are no change either."""
    out = []
    for name in fields:
        new = after.values.get(name)
        if new is None or new == "":
            continue
        old = known.get(name)
        if old is None or _key(old) != _key(new):
            out.append(FieldChange(name, old, new))
    return tuple(out)


def _key(value: Any) -> str:
    return "".join(str(value).split()).casefold()


def mask_iban(iban: Any) -> str:
    """The IBAN as a client may see it: its first and last four characters ("BE71 •••• •••• 6760")."""
    compact = "".join(str(iban).split()).upper()
    if len(compact) <= 8:
        return "•" * len(compact)
    shown = compact[:4] + "•" * (len(compact) - 8) + compact[-4:]
    return " ".join(shown[i:i + 4] for i in range(0, len(shown), 4))
