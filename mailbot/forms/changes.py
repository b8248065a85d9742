"""What changed between a dossier's previous order form and a corrected one (pure)."""

from __future__ import annotations

from dataclasses import dataclass

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
