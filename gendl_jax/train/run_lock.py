"""A run holds its folder: an OS-level lock on ``<folder>/.lock`` for as long as it trains.

Two processes started with the same ``--out`` would otherwise both pass the "folder already holds
checkpoints" check and interleave their logs and checkpoints. :func:`hold_run_folder` takes an
exclusive, non-blocking lock (``fcntl.flock``; ``msvcrt.locking`` on Windows) on ``<folder>/.lock``
and writes the holder's pid, host, start time and command line into it; a second process fails at
once with :class:`RunFolderBusyError` (a ``FileExistsError``) naming the folder and the holder.

The operating system releases the lock when the holding process ends, however it ends (SIGKILL,
a crash, a power-off of a local disk), so a later ``--resume`` never has to remove a stale lock by
hand; the ``.lock`` file itself stays (deleting it would let two processes lock two different files).

Limits: ``flock`` is advisory (it stops other ``gendl`` processes, not other programs); on network file
systems it is as reliable as the server's lock support (NFS v4 and Lustre with ``flock`` support it);
a child made by ``fork`` without ``exec`` inherits the lock and keeps it while it lives. In a
multi-process job only process 0 takes the lock (``jax.process_index() == 0``): the others share
process 0's folder by design. The Windows path (``msvcrt``) is written but not tested by this project's CI.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import pathlib
import shlex
import socket
import sys
import time
from collections.abc import Iterator

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

LOCK_NAME = ".lock"
"""The lock file inside a run folder."""

_WINDOWS_LOCK_OFFSET = 1 << 30
"""msvcrt locks a byte range that blocks reads too: lock one byte far past the holder's record."""


class RunFolderBusyError(FileExistsError):
    """Another process holds the run folder. ``folder`` and ``holder`` (the holder's record: pid, host,
    started, command; empty when it could not be read) are attributes."""

    def __init__(self, folder: pathlib.Path, holder: dict):
        self.folder, self.holder = folder, holder
        if holder:
            who = (
                f"process {holder.get('pid', '?')} on {holder.get('host', '?')} (started "
                f"{holder.get('started', '?')}: {holder.get('command', '?')})"
            )
        else:
            who = "another process (its record could not be read)"
        super().__init__(
            f"run folder {folder} is in use by {who}; wait for it to finish or stop it, then rerun "
            "(with --resume to continue its checkpoints), or choose another out folder"
        )


def _try_lock(fd: int) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:  # BlockingIOError (flock) or PermissionError (msvcrt)
        return False
    return True


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def read_holder(folder: str | os.PathLike) -> dict:
    """The record the last holder of ``folder`` wrote (``{}`` if none or unreadable): pid, host, started
    (ISO 8601 UTC), command. A record says who *took* the lock, not that it is still held."""
    try:
        text = (pathlib.Path(folder) / LOCK_NAME).read_text()
        return json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def hold_run_folder(folder: str | os.PathLike, *, enabled: bool | None = None) -> Iterator[pathlib.Path | None]:
    """Holds ``folder`` (created if needed) for the ``with`` block: an exclusive OS lock on ``folder/.lock``.

    Args:
      folder: the run folder.
      enabled: take the lock (default: only in process 0 of a multi-process job, ``jax.process_index() == 0``);
        ``False`` yields ``None`` and locks nothing.

    Yields:
      The lock file's path (``None`` when not enabled).

    Raises:
      RunFolderBusyError: (a ``FileExistsError``) another process holds ``folder``; the message names the
        folder and the holder's pid, host, start time and command line. Raised at once, never waits.
    """
    if enabled is None:
        import jax

        enabled = jax.process_index() == 0
    if not enabled:
        yield None
        return
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not truncated: it holds the holder's record
    try:
        if not _try_lock(fd):
            holder = read_holder(folder)
            deadline = time.monotonic() + 1.0
            while not holder and time.monotonic() < deadline:  # the holder has locked but not written yet
                time.sleep(0.05)
                holder = read_holder(folder)
            raise RunFolderBusyError(folder, holder)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": shlex.join([os.path.basename(sys.executable), *sys.argv]),
        }
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(record) + "\n").encode())
        os.fsync(fd)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # released: no record of a holder that is gone
            _unlock(fd)
    finally:
        os.close(fd)
