"""Opening a ledger file: deciding what the file is before anything writes to it.

A path may hold
- nothing: a write creates the ledger there; a read says there is no ledger yet;
- an empty SQLite file (0 bytes, or no tables): what a signal during creation leaves, since the
  migrations run in one transaction. It is ours: a write initialises it, a read sees an empty ledger;
- a loopkit ledger: a write applies this loopkit's pending migrations first; a read reads it as is;
- a ledger of a newer loopkit (a migration name this one does not know): reads work, since the
  columns of SPEC.md §4 are never renamed or dropped; writes are refused, never migrated;
- anything else (another app's database, a text file, a damaged or truncated file): no command
  touches it, and it is exit 2 naming the file.

The file is only ever opened through SQLite, never with open(): POSIX locks belong to a process, not
to a descriptor, so closing any other descriptor on the file drops the locks this process's
connections hold on it. The next clean close in another process then believes it is the last
connection, checkpoints, and deletes -wal and -shm under the live one, which from then on reads
stale pages ("database disk image is malformed", issue #15).

Opening does not write unless it must: journal_mode is set only on a file not in WAL mode yet, and
writability is probed without a schema change (a schema change on every open made every reader
reload its schema).
"""

from __future__ import annotations

import errno
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ..errors import LedgerError, NewerLedgerError, NotALedgerError

# Below this much free space a write command refuses to start: a batch could not record its first
# steps, and nothing is paid for that cannot be recorded. A full disk mid-batch is still handled.
MIN_FREE_BYTES = 64 * 1024

_READONLY, _CORRUPT, _CANTOPEN, _NOTADB = 8, 11, 14, 26  # SQLite's primary result codes
_HINT = "point --ledger or $LOOPKIT_LEDGER at a loopkit ledger, or at a new file"


@dataclass(frozen=True)
class Contents:
    """What an SQLite file holds, as far as loopkit is concerned."""

    objects: int  # rows of sqlite_master: 0 for a file no one has created anything in
    tables: tuple[str, ...]
    applied: tuple[str, ...]  # loopkit migrations recorded in _sqlite_migrations, in order

    @property
    def empty(self) -> bool:
        return self.objects == 0

    @property
    def unknown(self) -> tuple[str, ...]:
        from .schema import NAMES

        return tuple(name for name in self.applied if name not in NAMES)


def open_ledger(path: Path, *, readonly: bool, timeout: float) -> sqlite3.Connection:
    """A connection to the ledger at `path`, checked (and for writes migrated and probed).

    Raises NotALedgerError / NewerLedgerError / LedgerError for what the user must fix. A write's
    other failures (read-only location, full disk) come out as sqlite3.Error or OSError, for the
    caller to word as it words every failed write."""
    if path.is_dir():
        raise NotALedgerError(f"is not a loopkit ledger (a folder); {_HINT}", location=str(path))
    if readonly:
        return _open_for_reads(path, timeout)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=timeout)
    try:
        contents = inspect(conn, path)
        if contents.unknown:
            raise NewerLedgerError(f"this ledger was written by a newer loopkit (migration {contents.unknown[-1]}); "
                                   "upgrade loopkit", location=str(path))
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode=WAL")  # once per file: readers never see the mode switch again
        conn.execute("PRAGMA synchronous=NORMAL")
        migrate(conn)
        probe_writable(conn, path)
    except sqlite3.OperationalError as exc:
        conn.close()
        if _code(exc) in (_CANTOPEN, _READONLY) and not _writable(path):  # SQLite says "unable to open database file"
            raise PermissionError(errno.EROFS, "read-only", str(path)) from None
        raise
    except BaseException:
        conn.close()
        raise
    return conn


def _writable(path: Path) -> bool:
    """Whether this process may write the file and create its -wal and -shm beside it (a read-only
    mount says no even to root; file modes say no to everyone else)."""
    return os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))


def connect_for_writes(path: Path, *, timeout: float) -> sqlite3.Connection:
    """Another connection to a ledger `open_ledger` has already checked (a writer thread's)."""
    conn = sqlite3.connect(str(path), timeout=timeout, check_same_thread=False)
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def inspect(conn: sqlite3.Connection, path: Path) -> Contents:
    """Read what the file holds; NotALedgerError when it is not SQLite, is damaged, or is someone else's."""
    try:
        objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        tables = tuple(r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite^_%' ESCAPE '^' ORDER BY name"))
        applied: tuple[str, ...] = ()
        if "_sqlite_migrations" in tables:
            try:
                from .schema import SET

                applied = tuple(r[0] for r in conn.execute(
                    "SELECT name FROM _sqlite_migrations WHERE migration_set = ? ORDER BY rowid", (SET,)))
            except sqlite3.OperationalError:  # another tool's table of that name, with other columns
                applied = ()
        _check_length(conn, path)
    except sqlite3.DatabaseError as exc:
        if _code(exc) in (_NOTADB, _CORRUPT):
            why = "not an SQLite database" if _code(exc) == _NOTADB else f"damaged: {exc}"
            raise NotALedgerError(f"is not a loopkit ledger ({why}); {_HINT}", location=str(path)) from None
        raise
    contents = Contents(objects, tables, applied)
    if not contents.empty and not applied:
        shown = ", ".join(tables[:4]) + (", …" if len(tables) > 4 else "")
        what = f"an SQLite database of another application: {shown}" if tables else "an SQLite database without tables"
        raise NotALedgerError(f"is not a loopkit ledger ({what}); {_HINT}", location=str(path))
    return contents


def _check_length(conn: sqlite3.Connection, path: Path) -> None:
    """A file shorter than the pages its header counts was cut off (a partial copy, a full disk).
    Only decidable when no -wal holds pages the main file does not have yet."""
    wal = Path(f"{path}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        return
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    size = path.stat().st_size
    if size < pages * page_size:
        raise NotALedgerError(f"is not a loopkit ledger (truncated: {size} of {pages * page_size} bytes); {_HINT}",
                              location=str(path))


def migrate(conn: sqlite3.Connection) -> None:
    """Apply pending migrations inside one immediate transaction, so processes racing to create a
    fresh ledger take turns (the others wait on the busy timeout, then find nothing pending)."""
    from .schema import NAMES, SET

    known = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "_sqlite_migrations" in known:
        done = {r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations WHERE migration_set = ?", (SET,))}
        if set(NAMES) <= done:
            return
    from sqlite_utils import Database

    from .schema import migrations

    conn.execute("BEGIN IMMEDIATE")
    try:
        migrations().apply(Database(conn, execute_plugins=False))  # sqlite-utils nests its transactions as savepoints
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def probe_writable(conn: sqlite3.Connection, path: Path) -> None:
    """Fail before any model call is paid for when the file cannot take a write (read-only, disk full).

    A real write transaction proves the lock and the location; it rewrites the header's user_version
    with its own value, so no table, row or schema changes. Free space is the file system's answer."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        conn.execute(f"PRAGMA user_version = {version}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if free_bytes(path.parent) < MIN_FREE_BYTES:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))


def free_bytes(folder: Path) -> int:
    """Space this process may still write in `folder` (root may use the blocks reserved for it)."""
    st = os.statvfs(folder)
    return (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize


def _open_for_reads(path: Path, timeout: float) -> sqlite3.Connection:
    if not path.exists():
        raise LedgerError("no ledger here yet: run `loopkit run SPEC` first, or pass --ledger PATH", location=str(path))
    conn = _connect_readonly(path, timeout)
    try:
        contents = inspect(conn, path)
    except sqlite3.Error as exc:
        conn.close()
        raise _read_error(path, exc) from None
    except BaseException:
        conn.close()
        raise
    if contents.empty:  # creation was cut short: nothing recorded yet, so an empty ledger answers
        conn.close()
        return _empty_ledger()
    return conn


def _connect_readonly(path: Path, timeout: float) -> sqlite3.Connection:
    """A read-only connection that takes part in WAL like any other (it sees every commit).

    Where the folder cannot be written and the -shm is missing, SQLite cannot read a WAL ledger that
    way; if no -wal holds pending pages either, the file is complete and nobody can write it (a writer
    would have to create those files), so it is read as immutable. Never otherwise: an immutable
    connection ignores later writes, and a long-lived one then reads pages that moved (issue #15)."""
    uri = path.resolve().as_uri()  # percent-encoded: a '?', '#' or '%' in a folder name stays part of the path
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=timeout)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        wal = Path(f"{path}-wal")
        if _code(exc) != _CANTOPEN or os.access(path.parent, os.W_OK) or (wal.exists() and wal.stat().st_size > 0):
            raise _read_error(path, exc) from None
    except sqlite3.DatabaseError:
        return conn  # inspect() words it
    immutable = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, timeout=timeout, factory=_Immutable)
    immutable.watch(path)
    return immutable


class _Immutable(sqlite3.Connection):
    """A connection SQLite was promised the file never changes under. Should it change after all (the
    folder made writable again, a read-only mount of a folder written elsewhere), reading on would
    mix stale pages with new ones, so each statement first checks the file is as it was."""

    def watch(self, path: Path) -> None:
        self._path, self._stamp = path, _stamp(path)

    def execute(self, sql: str, parameters: object = (), /) -> sqlite3.Cursor:  # type: ignore[override]
        try:
            same = _stamp(self._path) == self._stamp
        except OSError:  # gone, or moved away
            same = False
        if not same:
            raise LedgerError("the ledger changed since it was opened read-only (immutable); open it again",
                              location=str(self._path))
        return super().execute(sql, parameters)  # type: ignore[arg-type]


def _stamp(path: Path) -> tuple[int, int, int, bool]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns, Path(f"{path}-wal").exists()


def _empty_ledger() -> sqlite3.Connection:
    """An in-memory ledger with the full schema and no rows."""
    from sqlite_utils import Database

    from .schema import migrations

    conn = sqlite3.connect(":memory:")
    migrations().apply(Database(conn, execute_plugins=False))
    return conn


def _read_error(path: Path, exc: BaseException) -> LedgerError:
    return LedgerError(f"cannot read the ledger: {exc}", location=str(path))


def _code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        text = str(exc)
        return _NOTADB if "not a database" in text else _CORRUPT if "malformed" in text else None
    return code & 0xFF
