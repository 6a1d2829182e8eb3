"""SQLite state: current/active providers, breaker snapshots, switch events, the request log.

Writes never happen on mitmproxy's event loop: they are queued to one writer thread that
commits a batch at least every ``FLUSH_SECONDS``, so a crash loses at most the last second
of rows, and WAL mode keeps the file consistent whatever happens.

A file that cannot be used (damaged, read-only, in a read-only directory) is refused at open
with a StoreError saying why, and never written; a write that fails later is reported once.
WAL maps the ``-shm`` file into memory, and a mapped file that cannot be written or grown
kills the process with SIGBUS: when it is not writable, a rollback journal is used instead.
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ccswitch_addon.core.breaker import State
from ccswitch_addon.core.budget import Spent

__all__ = ["BreakerRow", "RequestRow", "Store", "StoreError", "open_readonly"]

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5
SCHEMA_VERSION = 5
CONVERSATION_TURNS = 256  # previous_response_id turns kept in the file, newest first
MIGRATIONS: dict[int, Sequence[str]] = {
    1: (
        "CREATE TABLE apps (app TEXT PRIMARY KEY, current TEXT, active TEXT)",
        "CREATE TABLE breakers (app TEXT, provider TEXT, state TEXT, open_until REAL,"
        " cooldown_until REAL, updated REAL, PRIMARY KEY (app, provider))",
        "CREATE TABLE events (id INTEGER PRIMARY KEY, time REAL, app TEXT,"
        " from_provider TEXT, to_provider TEXT, reason TEXT)",
        "CREATE TABLE requests (id INTEGER PRIMARY KEY, time REAL, app TEXT, provider TEXT,"
        " model_requested TEXT, model_sent TEXT, status INTEGER, error TEXT, attempts INTEGER,"
        " total_ms REAL, ttfb_ms REAL, input_tokens INTEGER, output_tokens INTEGER,"
        " streaming INTEGER)",
        "CREATE INDEX requests_by_time ON requests (time)",
        "CREATE INDEX events_by_time ON events (time)",
    ),
    # Responses turns translated for Chat providers, so previous_response_id survives a restart.
    2: ("CREATE TABLE conversations (id TEXT PRIMARY KEY, previous TEXT, items TEXT, time REAL)",),
    # The route that took a request and why its provider (affinity), for `ccswitch log`.
    3: ("ALTER TABLE requests ADD COLUMN route TEXT", "ALTER TABLE requests ADD COLUMN why TEXT"),
    # Each request's attempt chain (JSON) and why no backup was tried, for the log and the
    # dashboard after a restart.
    4: (
        "ALTER TABLE requests ADD COLUMN chain TEXT",
        "ALTER TABLE requests ADD COLUMN note TEXT",
    ),
    # What requests cost (core/prices.py), and each provider's spend per period for budgets.
    5: (
        "ALTER TABLE requests ADD COLUMN cost_usd REAL",
        "ALTER TABLE requests ADD COLUMN cache_read_tokens INTEGER",
        "ALTER TABLE requests ADD COLUMN cache_write_tokens INTEGER",
        "ALTER TABLE requests ADD COLUMN input_total_tokens INTEGER",
        "CREATE TABLE spend (app TEXT, provider TEXT, period TEXT, key TEXT, usd REAL,"
        " PRIMARY KEY (app, provider, period))",
    ),
}


class StoreError(Exception):
    """The state file cannot be used; the message says which file and why."""


class RequestRow(NamedTuple):
    time: float
    app: str
    provider: str | None
    model_requested: str | None
    model_sent: str | None
    status: int | None
    error: str | None
    attempts: int
    total_ms: float
    ttfb_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    streaming: bool
    route: str | None = None
    why: str | None = None
    chain: str | None = None  # JSON: [{"provider", "ms", "status"|"error"}, …]
    note: str | None = None  # "no failover: …"
    cost_usd: float | None = None  # None: the model has no known price
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    input_total_tokens: int | None = None  # all input: uncached, cache reads and writes


@dataclass(frozen=True)
class BreakerRow:
    app: str
    provider: str
    state: State
    open_until: float
    cooldown_until: float


def _connect(path: Path, wal: bool = True, timeout: float = 2.0) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=timeout, check_same_thread=False)
    try:
        if wal:
            connection.execute("PRAGMA journal_mode=WAL")
        else:
            # Exclusive locking before the first access keeps SQLite off the -shm file while it
            # leaves WAL mode (it keeps the WAL index on the heap instead).
            connection.execute("PRAGMA locking_mode=EXCLUSIVE")
            connection.execute("PRAGMA journal_mode=DELETE")
            connection.execute("PRAGMA locking_mode=NORMAL")
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()  # releases it
        connection.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        connection.close()  # a locked or damaged file: nothing is left open (3.13 warns)
        raise
    return connection


def _writable(path: Path) -> bool:
    """Whether the state file can use WAL; StoreError when it cannot be written at all."""
    if path.exists() and not os.access(path, os.W_OK):
        raise StoreError("the file is read-only")
    if not os.access(path.parent, os.W_OK):
        raise StoreError(
            f"its directory {path.parent} is read-only (SQLite keeps its journal beside it)"
        )
    shm = path.with_name(path.name + "-shm")
    return not shm.exists() or os.access(shm, os.W_OK)


def _check(connection: sqlite3.Connection) -> None:
    """StoreError when a page of the file is damaged (read before anything is written)."""
    try:
        problems = [row[0] for row in connection.execute("PRAGMA quick_check(3)")]
    except sqlite3.OperationalError:
        raise  # locked, or cannot be read at all: said as it is
    except sqlite3.DatabaseError as e:  # a page that is not a page
        problems = [str(e)]
    if problems != ["ok"]:
        raise StoreError(f"the file is damaged ({'; '.join(problems)}); it is left as it is")


def _migrate(connection: sqlite3.Connection) -> None:
    connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = connection.execute("SELECT max(version) FROM schema_version").fetchone()
    version = row[0] or 0
    if version > SCHEMA_VERSION:
        raise StoreError(f"made by a newer ccswitch (schema {version} > {SCHEMA_VERSION})")
    for target in range(version + 1, SCHEMA_VERSION + 1):
        with connection:
            for statement in MIGRATIONS[target]:
                connection.execute(statement)
            connection.execute("INSERT INTO schema_version VALUES (?)", (target,))


class Store:
    """The state file, open for the proxy: reads at start, writes through the writer thread."""

    def __init__(self, path: Path, log_days: float = 30, clock: Callable[[], float] = time.time):
        self.path = path
        self.log_days = log_days
        self._clock = clock
        self._failing = False  # the last batch failed: said once, until a batch succeeds
        self._db: sqlite3.Connection | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.wal = _writable(path)
            if not self.wal:
                logger.warning(
                    "ccswitch: %s-shm is not writable; the state file uses a rollback journal "
                    "instead of WAL",
                    path,
                )
            self._db = _connect(path, self.wal)
            _check(self._db)
            _migrate(self._db)
            self._saved = (self._read_apps(), self._read_breakers(), self._read_events())
            self._turns = self._read_conversations()
            self._spent = self._read_spend()
        except (sqlite3.Error, OSError, StoreError) as e:
            if self._db is not None:
                self._db.close()
            raise StoreError(f"{path}: cannot use the state file: {e}") from None
        self._queue: queue.Queue[tuple[str, tuple[Any, ...]] | None] = queue.Queue()
        self._flush_now = threading.Event()  # flush() and close() need not wait out a batch
        self._thread = threading.Thread(target=self._write_loop, name="ccswitch-store", daemon=True)
        self._thread.start()
        self._prune()

    # --- reads (at open: a damaged page is found before the proxy relies on the file) -------

    def apps(self) -> dict[str, tuple[str | None, str | None]]:
        return dict(self._saved[0])

    def breakers(self) -> list[BreakerRow]:
        return list(self._saved[1])

    def events(self, limit: int = 50) -> list[tuple[float, str, str | None, str, str]]:
        return self._saved[2][-limit:]

    def conversations(self) -> list[tuple[str, str | None, str]]:
        """(response id, previous id, items as JSON) of the remembered turns, oldest first."""
        return list(self._turns)

    def _read_conversations(self) -> list[tuple[str, str | None, str]]:
        assert self._db is not None
        rows = self._db.execute(
            "SELECT id, previous, items FROM conversations ORDER BY time DESC LIMIT ?",
            (CONVERSATION_TURNS,),
        ).fetchall()
        return [(rid, previous, items) for rid, previous, items in reversed(rows)]

    def spend(self) -> list[Spent]:
        """Each provider's spend in its latest day and month (budgets)."""
        return list(self._spent)

    def _read_spend(self) -> list[Spent]:
        assert self._db is not None
        rows = self._db.execute("SELECT app, provider, period, key, usd FROM spend").fetchall()
        return [Spent(a, p, period, key, float(usd or 0)) for a, p, period, key, usd in rows]

    def _read_apps(self) -> dict[str, tuple[str | None, str | None]]:
        assert self._db is not None
        rows = self._db.execute("SELECT app, current, active FROM apps").fetchall()
        return {app: (current, active) for app, current, active in rows}

    def _read_breakers(self) -> list[BreakerRow]:
        assert self._db is not None
        rows = self._db.execute(
            "SELECT app, provider, state, open_until, cooldown_until FROM breakers"
        ).fetchall()
        result = []
        for app, provider, state, open_until, cooldown_until in rows:
            try:
                result.append(
                    BreakerRow(
                        app, provider, State(state), open_until or 0.0, cooldown_until or 0.0
                    )
                )
            except ValueError:
                continue  # an unknown state from a future version: start closed
        return result

    def _read_events(self, limit: int = 50) -> list[tuple[float, str, str | None, str, str]]:
        assert self._db is not None
        rows = self._db.execute(
            "SELECT time, app, from_provider, to_provider, reason FROM events"
            " ORDER BY time DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [tuple(row) for row in reversed(rows)]

    # --- writes (queued) -------------------------------------------------------------------

    def save_app(self, app: str, current: str | None, active: str | None) -> None:
        self._put(
            "INSERT INTO apps VALUES (?, ?, ?) ON CONFLICT (app) DO UPDATE SET"
            " current = excluded.current, active = excluded.active",
            (app, current, active),
        )

    def save_breaker(self, row: BreakerRow) -> None:
        self._put(
            "INSERT OR REPLACE INTO breakers VALUES (?, ?, ?, ?, ?, ?)",
            (
                row.app,
                row.provider,
                row.state.value,
                row.open_until,
                row.cooldown_until,
                self._clock(),
            ),
        )

    def add_event(self, when: float, app: str, from_: str | None, to: str, reason: str) -> None:
        self._put(
            "INSERT INTO events (time, app, from_provider, to_provider, reason)"
            " VALUES (?, ?, ?, ?, ?)",
            (when, app, from_, to, reason),
        )

    def add_request(self, row: RequestRow) -> None:
        self._put(
            "INSERT INTO requests (time, app, provider, model_requested, model_sent,"
            " status, error, attempts, total_ms, ttfb_ms, input_tokens, output_tokens,"
            " streaming, route, why, chain, note, cost_usd, cache_read_tokens,"
            " cache_write_tokens, input_total_tokens)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            row,
        )

    def save_spend(self, row: Spent) -> None:
        self._put(
            "INSERT OR REPLACE INTO spend VALUES (?, ?, ?, ?, ?)",
            (row.app, row.provider, row.period, row.key, row.usd),
        )

    def save_turn(self, response_id: str, previous: str | None, items: str) -> None:
        self._put(
            "INSERT OR REPLACE INTO conversations VALUES (?, ?, ?, ?)",
            (response_id, previous, items, self._clock()),
        )

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything queued so far is committed (tests, shutdown)."""
        done = threading.Event()
        self._queue.put(("__flush__", (done,)))
        self._flush_now.set()
        done.wait(timeout)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._flush_now.set()
            self._thread.join(5.0)
        if self._db is not None:
            self._db.close()

    def _put(self, sql: str, args: tuple[Any, ...]) -> None:
        self._queue.put((sql, args))

    def _prune(self) -> None:
        cutoff = self._clock() - self.log_days * 86400
        self._put("DELETE FROM requests WHERE time < ?", (cutoff,))
        self._put("DELETE FROM events WHERE time < ?", (cutoff,))
        self._put(
            "DELETE FROM conversations WHERE id NOT IN"
            " (SELECT id FROM conversations ORDER BY time DESC LIMIT ?)",
            (CONVERSATION_TURNS,),
        )

    def _write_loop(self) -> None:
        try:
            writer = _connect(self.path, self.wal)
        except sqlite3.Error as e:
            logger.warning("ccswitch: %s: state file writes stopped: %s", self.path, e)
            self._drain()
            return
        last_prune = time.monotonic()
        try:
            while True:
                batch = [self._queue.get()]  # sleep until there is something to write
                if batch[0] is not None and not self._flush_now.is_set():
                    # Then let rows gather instead of waking for each: a thread that wakes
                    # per row keeps taking the GIL from the event loop.
                    self._flush_now.wait(FLUSH_SECONDS)
                self._flush_now.clear()
                while True:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                if not self._commit(writer, batch):
                    return
                if time.monotonic() - last_prune > 3600:
                    last_prune = time.monotonic()
                    self._prune()
        finally:
            writer.close()

    def _drain(self) -> None:
        """Without a writer: take rows off the queue so that flush() and close() return."""
        while (item := self._queue.get()) is not None:
            if item[0] == "__flush__":
                item[1][0].set()

    def _commit(
        self, writer: sqlite3.Connection, batch: list[tuple[str, tuple[Any, ...]] | None]
    ) -> bool:
        """Write one batch in one transaction; False when told to stop."""
        waiting: list[threading.Event] = []
        keep_going = True
        runs: list[tuple[str, list[tuple[Any, ...]]]] = []  # same statement in a row: one call
        for item in batch:
            if item is None:
                keep_going = False
            elif item[0] == "__flush__":
                waiting.append(item[1][0])
            elif runs and runs[-1][0] == item[0]:
                runs[-1][1].append(item[1])
            else:
                runs.append((item[0], [item[1]]))
        try:
            with writer:
                for sql, rows in runs:
                    writer.executemany(sql, rows)
        except sqlite3.Error as e:
            # The proxy keeps routing; losing log rows beats stopping the writer. Said once,
            # not per batch: a full disk would otherwise write a line every half second.
            if not self._failing:
                logger.warning(
                    "ccswitch: %s: state file writes fail (%s); routing goes on, state is "
                    "kept in memory until writes work again",
                    self.path,
                    e,
                )
            self._failing = True
        else:
            if self._failing:
                logger.warning("ccswitch: %s: state file writes work again", self.path)
            self._failing = False
        for event in waiting:
            event.set()
        return keep_going


@contextmanager
def open_readonly(path: Path) -> Iterator[sqlite3.Connection]:
    """The state file for the CLI: read-only, never created."""
    if not path.exists():
        raise StoreError(f"{path}: no state file (has the proxy run with this state path?)")
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
    except sqlite3.Error as e:
        raise StoreError(f"{path}: cannot read the state file: {e}") from None
    try:
        connection.execute("SELECT count(*) FROM schema_version").fetchone()
    except sqlite3.Error as e:
        connection.close()
        raise StoreError(f"{path}: cannot read the state file: {e}") from None
    with closing(connection):
        yield connection
