"""The embedded stack's SQLite never gives a trigger id out twice (airlaunch.stack.sqlite_triggers says why)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy.dialects import sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from airlaunch.stack.sqlite_triggers import never_reuse_trigger_ids


def _airflow_trigger_table(path: Path) -> sqlite3.Connection:
    """Airflow's own trigger table (the installed Airflow's model, as `airflow db migrate` creates it on SQLite)
    with a row, and a task instance pointing at it."""
    from airflow.models.trigger import Trigger

    db = sqlite3.connect(path, isolation_level=None)
    db.execute(str(CreateTable(Trigger.__table__).compile(dialect=sqlite.dialect())))
    for index in Trigger.__table__.indexes:
        db.execute(str(CreateIndex(index).compile(dialect=sqlite.dialect())))
    db.execute('CREATE TABLE task_instance (id TEXT, trigger_id INTEGER REFERENCES "trigger" (id) ON DELETE CASCADE)')
    db.execute("INSERT INTO trigger (classpath, kwargs, created_date) VALUES ('a', '{}', '2026-01-01')")
    db.execute("INSERT INTO task_instance VALUES ('try-1', 1)")
    return db


def _next_id_after_deleting_the_newest(db: sqlite3.Connection) -> int:
    db.execute("INSERT INTO trigger (classpath, kwargs, created_date) VALUES ('b', '{}', '2026-01-01')")
    newest = db.execute("SELECT max(id) FROM trigger").fetchone()[0]
    db.execute("DELETE FROM trigger WHERE id = ?", (newest,))  # the scheduler's clean_unused after a clear
    db.execute("INSERT INTO trigger (classpath, kwargs, created_date) VALUES ('c', '{}', '2026-01-01')")
    new: int = db.execute("SELECT max(id) FROM trigger").fetchone()[0]
    return new - newest


def test_airflows_trigger_table_reuses_the_newest_id_on_sqlite(tmp_path: Path) -> None:
    """What goes wrong without the rebuild: the new try's trigger gets the id of the old one."""
    assert _next_id_after_deleting_the_newest(_airflow_trigger_table(tmp_path / "airflow.db")) == 0


def test_after_the_rebuild_a_trigger_id_is_never_given_out_twice(tmp_path: Path) -> None:
    db = _airflow_trigger_table(tmp_path / "airflow.db")
    indexes = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'trigger' AND sql IS NOT NULL"
    before = db.execute(indexes).fetchall()
    assert never_reuse_trigger_ids(tmp_path / "airflow.db") is True
    assert db.execute(indexes).fetchall() == before
    assert never_reuse_trigger_ids(tmp_path / "airflow.db") is False  # once is enough; migrate runs again
    assert _next_id_after_deleting_the_newest(db) == 1
    assert db.execute("SELECT classpath FROM trigger WHERE id = 1").fetchone() == ("a",)  # rows kept
    assert db.execute("SELECT trigger_id FROM task_instance").fetchone() == (1,)
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
