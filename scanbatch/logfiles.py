"""The data folder's log files, each capped in size: `server.log` (the server's own log, when
it is started with `--log-file`, as `make run` and the workbench do) and `warm_kernels.log` (what
notebook processes print before their job arrives). A file over SCANBATCH_LOG_MAX_BYTES becomes
`<name>.1` (`.1` becomes `.2`, and so on); SCANBATCH_LOG_BACKUPS of those are kept, the oldest
goes. A job's own notebook log lives in its job folder and ends with the job."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

from scanbatch.private import FILE_MODE

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def rotate_if_over(path: Path, max_bytes: int, backups: int) -> bool:
    """Move `path` aside as `path.1` (and the older ones up) if it holds `max_bytes` or more.
    For a file that processes append to through descriptors of their own: each keeps writing
    to the file it opened, renamed, and the next one to open `path` starts a new file."""
    try:
        if path.stat().st_size < max_bytes:
            return False
    except FileNotFoundError:
        return False
    handler = logging.handlers.RotatingFileHandler(path, backupCount=backups, delay=True)
    handler.doRollover()
    handler.close()
    return True


class _OutputFollowingHandler(logging.handlers.RotatingFileHandler):
    """A rotating log that the process's stdout and stderr also write to (tracebacks of
    threads, waitress's and the C libraries' prints): at each rollover they move to the new
    file with it, so no renamed or deleted file is kept open and growing."""

    def _open(self):  # type: ignore[no-untyped-def]
        # The log is private like the rest of the data folder, whatever the umask.
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        stream = open(fd, "a", encoding=self.encoding, errors=self.errors)  # noqa: SIM115
        for output in (sys.stdout, sys.stderr):
            output.flush()
        os.dup2(stream.fileno(), 1)
        os.dup2(stream.fileno(), 2)
        return stream


def log_to_file(path: Path, max_bytes: int, backups: int) -> logging.Handler:
    """Send this process's log, stdout and stderr to `path`, rotated at `max_bytes`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = _OutputFollowingHandler(path, maxBytes=max_bytes, backupCount=backups)
    handler.setFormatter(logging.Formatter(FORMAT))
    # Python's own writes to stdout and stderr go through the same descriptors, line-buffered.
    for output in (sys.stdout, sys.stderr):
        if hasattr(output, "reconfigure"):
            output.reconfigure(line_buffering=True)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler
