"""The time the daemon and the staff page go by: the system's, or a simulated one (the demo,
replay, tests) passed in its place."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

Clock = Callable[[], dt.datetime]


def system_clock() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
