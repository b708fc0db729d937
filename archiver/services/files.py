"""Owner-only SQLite files: the archive database holds password hashes and archived data.

SQLite creates a new database file with the process's umask (usually 0644: world-readable) and
gives its journal/WAL files the database file's mode. Before the first connection the service
creates a missing SQLite database file itself, mode 0600; an existing *archive* database (the
service's own) that group or others can read is tightened to 0600, with a warning in the log.
The source database belongs to the operator: a new one is created 0600, an existing one is left
as it is.
"""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

OWNER_ONLY = 0o600
_SIDE_FILES = ("-wal", "-shm", "-journal")


def sqlite_path(url: str) -> Path | None:
    """The file behind an SQLite URL, or None (not SQLite, in memory, or a ``file:`` URI)."""
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - not a URL we can read; the engine will say so
        return None
    if not parsed.drivername.startswith("sqlite"):
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:") or parsed.query.get("uri"):
        return None
    return Path(database)


def secure_sqlite_file(url: str, *, own: bool) -> None:
    """Create the SQLite file of ``url`` owner-only if it is missing; tighten it if ``own``."""
    path = sqlite_path(url)
    if path is None or not path.parent.is_dir():
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_ONLY)
    except FileExistsError:
        if own:
            _tighten(path)
        return
    except OSError as exc:  # read-only folder and the like: the engine reports the real problem
        log.warning("could not create %s with owner-only permissions: %s", path, exc.strerror)
        return
    os.close(fd)


def _tighten(path: Path) -> None:
    for candidate in [path, *(path.with_name(path.name + suffix) for suffix in _SIDE_FILES)]:
        try:
            st = candidate.stat()
        except FileNotFoundError:
            continue
        if st.st_uid != os.getuid() or not stat.S_IMODE(st.st_mode) & 0o077:
            continue
        try:
            candidate.chmod(OWNER_ONLY)
            log.warning("%s was readable by group/others; its permissions are now 0600", candidate)
        except OSError as exc:
            log.warning("%s is readable by group/others and could not be restricted: %s", candidate, exc.strerror)
