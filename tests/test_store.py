"""The SQLite state file: schema, writer thread, restart data, bad files."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ccswitch_addon.core.breaker import State
from ccswitch_addon.state.store import (
    CONVERSATION_TURNS,
    MIGRATIONS,
    SCHEMA_VERSION,
    BreakerRow,
    RequestRow,
    Store,
    StoreError,
    open_readonly,
)


def row(when: float, **changes: object) -> RequestRow:
    values: dict[str, object] = dict(
        time=when,
        app="claude",
        provider="primary",
        model_requested="m",
        model_sent="m",
        status=200,
        error=None,
        attempts=1,
        total_ms=12.5,
        ttfb_ms=3.0,
        input_tokens=10,
        output_tokens=5,
        streaming=True,
    )
    values.update(changes)
    return RequestRow(**values)  # type: ignore[arg-type]


def test_creates_schema_in_wal_mode(tmp_path: Path) -> None:
    store = Store(tmp_path / "sub" / "state.db")
    store.close()
    db = sqlite3.connect(tmp_path / "sub" / "state.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT max(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


def test_round_trip_of_everything_it_keeps(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(path, clock=lambda: 1000.0)
    store.save_app("claude", "backup", "primary")
    store.save_app("claude", "backup", "backup")
    store.save_breaker(BreakerRow("claude", "primary", State.OPEN, 2000.0, 0.0))
    store.add_event(999.0, "claude", "primary", "backup", "after primary: 529")
    store.add_request(row(1000.0))
    store.flush()
    store.close()
    again = Store(path, clock=lambda: 1000.0)
    assert again.apps() == {"claude": ("backup", "backup")}
    assert again.breakers() == [BreakerRow("claude", "primary", State.OPEN, 2000.0, 0.0)]
    assert again.events() == [(999.0, "claude", "primary", "backup", "after primary: 529")]
    again.close()
    with open_readonly(path) as db:
        assert db.execute("SELECT app, provider, input_tokens FROM requests").fetchall() == [
            ("claude", "primary", 10)
        ]


def test_rows_are_committed_within_a_second_without_flush(tmp_path: Path) -> None:
    import time

    path = tmp_path / "state.db"
    store = Store(path)
    store.add_request(row(time.time()))
    deadline = time.monotonic() + 3
    count = 0
    while time.monotonic() < deadline and count == 0:
        with open_readonly(path) as db:
            count = db.execute("SELECT count(*) FROM requests").fetchone()[0]
    store.close()
    assert count == 1


def test_retention_drops_old_rows_at_start(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    now = 100 * 86400.0
    store = Store(path, log_days=30, clock=lambda: now)
    store.add_request(row(now - 31 * 86400))
    store.add_request(row(now - 29 * 86400))
    store.flush()
    store.close()
    store = Store(path, log_days=30, clock=lambda: now)
    store.flush()
    store.close()
    with open_readonly(path) as db:
        kept = [r[0] for r in db.execute("SELECT time FROM requests")]
    assert kept == [now - 29 * 86400]


def test_corrupt_file_is_reported_clearly(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"state\.db: cannot use the state file"):
        Store(path)


def test_unwritable_location_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(StoreError, match="cannot use the state file"):
        Store(blocker / "state.db")


def test_locked_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("PRAGMA journal_mode=DELETE")
    locker.execute("CREATE TABLE t (x)")
    locker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="locked"):
            Store(path)
    finally:
        locker.execute("ROLLBACK")
        locker.close()


def test_readonly_open_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no state file"), open_readonly(tmp_path / "none.db"):
        pass
    assert not (tmp_path / "none.db").exists()


def _page_of(path: Path, table: str) -> tuple[int, int]:
    """(page size, root page number) of a table, to damage exactly that page."""
    db = sqlite3.connect(path)
    try:
        size = db.execute("PRAGMA page_size").fetchone()[0]
        (root,) = db.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)
        ).fetchone()
    finally:
        db.close()
    return size, root


def damage(path: Path, table: str) -> None:
    size, root = _page_of(path, table)
    with path.open("r+b") as f:
        f.seek((root - 1) * size)
        f.write(b"\xde\xad\xbe\xef" * (size // 4))


def saved_store(path: Path) -> None:
    store = Store(path, clock=lambda: 1000.0)
    store.save_app("claude", "backup", "backup")
    store.save_breaker(BreakerRow("claude", "primary", State.OPEN, 2000.0, 0.0))
    store.add_event(999.0, "claude", "primary", "backup", "after primary: 529")
    store.flush()
    store.close()


@pytest.mark.parametrize("table", ["apps", "breakers", "events", "requests"])
def test_a_damaged_page_is_refused_at_open_and_the_file_left_alone(
    tmp_path: Path, table: str
) -> None:
    path = tmp_path / "state.db"
    saved_store(path)
    damage(path, table)
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"state\.db: cannot use the state file: .*damaged"):
        Store(path)
    assert path.read_bytes() == before


@pytest.fixture
def immutable() -> Iterator[Callable[[Path], None]]:
    """chattr +i: read-only even for root (tests here run as root); undone at teardown."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    made: list[Path] = []

    def make(path: Path) -> None:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
            pytest.skip("this filesystem has no immutable attribute")
        made.append(path)

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_a_read_only_file_is_reported_at_open(
    tmp_path: Path, immutable: Callable[[Path], None]
) -> None:
    path = tmp_path / "state.db"
    saved_store(path)
    immutable(path)
    with pytest.raises(
        StoreError, match=r"state\.db: cannot use the state file: the file is read-only"
    ):
        Store(path)


def test_a_read_only_directory_is_reported_at_open(
    tmp_path: Path, immutable: Callable[[Path], None]
) -> None:
    path = tmp_path / "sub" / "state.db"
    saved_store(path)
    immutable(path.parent)
    with pytest.raises(StoreError, match=r"directory .* is read-only"):
        Store(path)


def test_an_unwritable_shm_falls_back_to_a_rollback_journal(
    tmp_path: Path, immutable: Callable[[Path], None], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.db"
    saved_store(path)
    shm = tmp_path / "state.db-shm"
    shm.write_bytes(b"\0" * 100)  # too short for a WAL index, and it cannot be grown
    immutable(shm)
    store = Store(path, clock=lambda: 1000.0)
    assert not store.wal
    assert "state.db-shm is not writable" in caplog.text
    assert store.apps() == {"claude": ("backup", "backup")}
    store.save_app("codex", "a", "a")
    store.flush()
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert db.execute("SELECT current FROM apps WHERE app = 'codex'").fetchone() == ("a",)
    db.close()


def test_a_write_that_fails_later_is_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    other = sqlite3.connect(path)
    other.execute("DROP TABLE events")  # every batch with an event fails from now on
    other.close()
    for n in range(3):
        store.add_event(float(n), "claude", "a", "b", "x")
        store.flush()
    assert caplog.text.count("state file writes fail") == 1
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, time REAL, app TEXT,"
                  " from_provider TEXT, to_provider TEXT, reason TEXT)")  # fmt: skip
    other.commit()
    other.close()
    store.add_event(9.0, "claude", "a", "b", "x")
    store.flush()
    store.close()
    assert "state file writes work again" in caplog.text


def test_a_schema_1_file_gains_the_conversations_table(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for statement in MIGRATIONS[1]:
        db.execute(statement)
    db.execute("INSERT INTO schema_version VALUES (1)")
    db.execute("INSERT INTO apps VALUES ('claude', 'backup', 'backup')")
    db.commit()
    db.close()
    store = Store(path)
    assert store.apps() == {"claude": ("backup", "backup")}  # kept through the migration
    assert store.conversations() == []
    store.save_turn("resp_1", None, "[]")
    store.close()
    again = Store(path)
    assert again.conversations() == [("resp_1", None, "[]")]
    again.close()


def test_only_the_newest_turns_are_kept(tmp_path: Path) -> None:
    now = [1000.0]
    store = Store(tmp_path / "state.db", clock=lambda: now[0])
    for i in range(CONVERSATION_TURNS + 5):
        now[0] += 1
        store.save_turn(f"resp_{i}", None, "[]")
    store.close()
    again = Store(tmp_path / "state.db")  # opening prunes
    again.flush()
    again.close()
    db = sqlite3.connect(tmp_path / "state.db")
    (count,) = db.execute("SELECT count(*) FROM conversations").fetchone()
    (oldest,) = db.execute("SELECT id FROM conversations ORDER BY time LIMIT 1").fetchone()
    db.close()
    assert count == CONVERSATION_TURNS
    assert oldest == "resp_5"
