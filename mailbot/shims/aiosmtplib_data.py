"""aiosmtplib's DATA command with a pause before the final dot.

The outbox marks a mail "handed" -- committed -- between the message's last line and the final
dot (mailbot/transport/smtp.py says why). aiosmtplib writes both at once and has no public hook
between them, so `HandingSMTP.data` re-implements `SMTP.data` on aiosmtplib's internals: the
connection's protocol object (`SMTP.protocol`, its `write` and `read_response`) and the
protocol module's line-ending normalisation and dot-doubling, as aiosmtplib 5 has them.
`send_message` is aiosmtplib's own, and calls this `data`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import aiosmtplib
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from aiosmtplib.typing import Default, SMTPStatus

# RFC 5321 4.5.3.2.6: the server has 10 minutes to answer the dot; giving up sooner would count
# as failed a mail it is still deciding on.
DOT_TIMEOUT_SECONDS = 600


class HandingSMTP(aiosmtplib.SMTP):
    """aiosmtplib's SMTP whose DATA, after the message's last line, leaves the final dot to
    `hand_over(write_dot)`, called within `quiet()` (aiosmtplib writes both at once): until the
    dot the server cannot take the mail, from then on it may. On a kept connection `hand_over`
    is set anew for each mail."""

    def __init__(self, quiet: Callable[[], AbstractAsyncContextManager[None]],
                 hand_over: Callable[[Callable[[], None]], None], **options) -> None:
        super().__init__(**options)
        self.quiet, self.hand_over = quiet, hand_over

    async def data(self, message: str | bytes, /, *,
                   timeout=Default.token) -> aiosmtplib.SMTPResponse:  # noqa: ASYNC109 - aiosmtplib's own signature
        timeout = self.timeout if timeout is Default.token else timeout
        if isinstance(message, str):
            message = message.encode("ascii")
        start = await self.execute_command(b"DATA", timeout=timeout)
        if start.code != SMTPStatus.start_input:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        protocol = self.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        try:
            protocol.write(PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message)))
            async with self.quiet():
                self.hand_over(lambda: protocol.write(b".\r\n"))
            response = await protocol.read_response(timeout=max(timeout or 0, DOT_TIMEOUT_SECONDS))
        except BaseException:
            self.close()  # without its dot the server drops the message
            raise
        if response.code != SMTPStatus.completed:
            raise aiosmtplib.SMTPDataError(response.code, response.message)
        return response
