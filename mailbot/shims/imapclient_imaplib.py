"""What IMAPClient does not tell, read from the imaplib connection inside it (`IMAPClient._imap`).

A watcher must not wait in IDLE for news the server already gave: in its answer to another
command (a FETCH or STORE while mail was being taken), which imapclient leaves in imaplib's
untagged responses without a word, or right after "+ idling", in imaplib's read buffer where
`idle_check()` -- which polls the socket -- never looks. IMAPClient has no public call for
either (imaplib's `response()` is public, but only on the private `_imap`; its buffered file is
private to imaplib).
"""

from __future__ import annotations

from imapclient import IMAPClient


def announced(client: IMAPClient) -> bool:
    """True when the server announced new mail (EXISTS) since the last call; consumes it."""
    _, data = client._imap.response("EXISTS")
    return data != [None]


def buffered(client: IMAPClient) -> bool:
    """True when lines from the server wait, in imaplib's read buffer or on the socket."""
    sock = client.socket()
    timeout = sock.gettimeout()
    sock.settimeout(0)  # look, never wait
    try:
        return bool(client._imap.file.peek(1))
    except OSError:
        return False
    finally:
        sock.settimeout(timeout)
