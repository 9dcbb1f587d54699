"""The embedded stack's SQLite never gives a trigger id out twice, and never moves a trigger from a live triggerer to
another (airlaunch.stack.sqlite_triggers says why)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.dialects import sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from airlaunch.stack.sqlite_triggers import keep_live_assignments, never_reuse_trigger_ids


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


def _two_triggerers_and_a_dead_one(path: Path) -> sqlite3.Connection:
    """Airflow's job and trigger tables: triggerer jobs 1 and 2 alive, 3 dead (no heartbeat for a minute), 4
    ended; trigger 1 unassigned, triggers 2 and 3 held by the dead and the ended one."""
    from airflow.jobs.job import Job

    db = _airflow_trigger_table(path)
    db.execute(str(CreateTable(Job.__table__).compile(dialect=sqlite.dialect())))
    now = datetime.now(UTC).replace(tzinfo=None)
    for job, heartbeat, ended in ((1, now, None), (2, now, None), (3, now - timedelta(minutes=1), None), (4, now, now)):
        db.execute(
            "INSERT INTO job (id, job_type, state, latest_heartbeat, end_date) VALUES (?, 'TriggererJob', ?, ?, ?)",
            (job, "running" if ended is None else "success", str(heartbeat), None if ended is None else str(ended)),
        )
    for held_by in (3, 4):
        db.execute(
            "INSERT INTO trigger (classpath, kwargs, created_date, triggerer_id) VALUES ('d', '{}', '2026-01-01', ?)",
            (held_by,),
        )
    return db


def _assign(db: sqlite3.Connection, trigger: int, triggerer: int | None) -> int | None:
    """What Trigger.assign_unassigned's UPDATE does to one trigger it selected; the trigger's triggerer after it."""
    db.execute("UPDATE trigger SET triggerer_id = ? WHERE id IN (?)", (triggerer, trigger))
    held: int | None = db.execute("SELECT triggerer_id FROM trigger WHERE id = ?", (trigger,)).fetchone()[0]
    return held


def test_without_it_two_triggerers_that_selected_the_same_trigger_both_take_it_the_later_wins(tmp_path: Path) -> None:
    db = _two_triggerers_and_a_dead_one(tmp_path / "airflow.db")
    assert (_assign(db, 1, 1), _assign(db, 1, 2)) == (1, 2)


def test_a_trigger_stays_with_its_live_triggerer_and_a_dead_ones_are_taken_over(tmp_path: Path) -> None:
    db = _two_triggerers_and_a_dead_one(tmp_path / "airflow.db")
    assert keep_live_assignments(tmp_path / "airflow.db") is True
    assert keep_live_assignments(tmp_path / "airflow.db") is False  # once is enough; migrate runs again
    assert never_reuse_trigger_ids(tmp_path / "airflow.db") is True  # (the rebuild drops it: migrate adds it after)
    assert keep_live_assignments(tmp_path / "airflow.db") is True
    assert (_assign(db, 1, 1), _assign(db, 1, 2)) == (1, 1)  # the later UPDATE skips it: triggerer 1 is alive
    assert (_assign(db, 2, 2), _assign(db, 3, 2)) == (2, 2)  # held by a dead (3) and an ended (4) triggerer
    assert (_assign(db, 1, None), _assign(db, 1, 2)) == (None, 2)  # clearing it is never refused
