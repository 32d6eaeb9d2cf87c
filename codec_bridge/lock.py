"""Exclusive, self-releasing locks that name their holder: one store writer, one trainer.

A lock is an ``flock`` on a small file. The kernel drops it when the holder exits, however it
dies (Ctrl-C, kill -9, a lost node on NFS), so a lock left behind by a killed run never blocks
the next one and nothing has to guess whether a pid is still alive. The file holds the holder's
pid, host and start time, which is what a refused process reports. Torch- and jax-free, like
`format`, because jtts locks its run directories with it too.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path


class LockedError(Exception):
    """Another live process holds the lock; the message names it (pid, host, since when)."""


class Lock:
    """A held lock; `release` (or leaving the ``with`` block, or exiting) lets it go."""

    def __init__(self, path: Path, fd: int | None):
        self.path, self._fd = path, fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file drops the flock
            self._fd = None

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _describe(fd: int) -> str:
    """'pid P on host H since T' from a held lock file ('another process' while it is new)."""
    for _ in range(20):  # the holder writes its name just after it locks
        try:
            info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
            return f"pid {info['pid']} on host {info['host']} since {info['since']}"
        except (ValueError, KeyError, TypeError):
            time.sleep(0.01)
    return "another process"


def holder(path: str | os.PathLike) -> str | None:
    """Who holds the lock at ``path`` ('pid P on host H since T'), or None when nobody does."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _describe(fd)
    except OSError:  # locks unsupported on this filesystem: nobody can be seen holding it
        return None
    finally:
        os.close(fd)
    return None


def acquire(path: str | os.PathLike, what: str) -> Lock:
    """Lock ``path`` (created if needed) for this process, or raise `LockedError` naming the
    holder and ``what`` is locked. On a filesystem without locks it warns once and proceeds."""
    path = Path(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        who = _describe(fd)
        os.close(fd)
        raise LockedError(
            f"{what} is in use by {who} (lock file {path}); wait for that run to end or stop it"
        ) from None
    except OSError as e:
        os.close(fd)
        if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        print(
            f"warning: {path}: this filesystem cannot lock files ({e.strerror}); "
            f"a second run on {what} would not be refused",
            file=sys.stderr,
        )
        return Lock(path, None)
    since = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": since}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
    return Lock(path, fd)


__all__ = ["Lock", "LockedError", "acquire", "holder"]
