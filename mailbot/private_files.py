"""Files and folders of personal data, created readable by their owner only, whatever the umask.

The database holds names, phone numbers, IBANs and mail subjects; the sandbox folder holds
whole mails. A umask of 022 (the usual) would make them readable by every user of the machine.
"""

from __future__ import annotations

import os
from pathlib import Path


def private_dir(path: Path) -> Path:
    """`mkdir -p path`, each folder it creates 0700. Folders that exist are left as they are
    (a parent such as /var/lib is not ours to change)."""
    missing = []
    here = path
    while not here.exists():
        missing.append(here)
        if here.parent == here:
            break
        here = here.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)  # never wider than 0700, even for an instant
        except FileExistsError:
            continue  # made meanwhile by someone else: theirs
        os.chmod(folder, 0o700)  # the umask may have taken the owner's bits too
    return path


def private_file(path: Path) -> bool:
    """Create `path` empty with mode 0600 unless it exists; True when created here."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return True


def close_to_others(path: Path) -> bool:
    """Take the bits of users other than the owner and group off an existing file (a database
    made world-readable by an earlier version); True when they were there."""
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return False
    if not mode & 0o007:
        return False
    os.chmod(path, mode & ~0o007)
    return True
