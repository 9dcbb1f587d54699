"""The embedded stack's Airflow on SQLite: trigger ids that are never given out twice.

Airflow's ``trigger.id`` is an INTEGER primary key, which SQLite makes an alias of the rowid and
numbers max(id) + 1: once the newest trigger row is deleted, the next one gets its id again.
That is exactly what a cleared deferred task does: clearing leaves the old trigger running in
the triggerer, the scheduler deletes the now unused row, the new try defers and its trigger row
gets the same id. The triggerer keys its running triggers by id only, so it keeps the old
trigger (the old try's handle) and never starts the new one, and the old trigger's event (its
try superseded) ends the new try: the fault suite's "clear" row failed on both backends so.

PostgreSQL's and MySQL 8's sequences never give an id out twice (the compose stack runs
PostgreSQL). On SQLite, AUTOINCREMENT gives the same guarantee (ids from sqlite_sequence, never
reused), so the stack rebuilds the table with it after each ``airflow db migrate``, as SQLite
documents for changing a table's definition (its "ALTER TABLE" page, the twelve steps): same
columns, constraints and indexes, rows kept.

Several triggerers (Airflow's HA mode) on SQLite: a trigger held by a live triggerer is never taken by
another. Airflow's ``Trigger.assign_unassigned`` selects unassigned triggers ``FOR UPDATE SKIP LOCKED``,
then sets their ``triggerer_id``; SQLite has no row locks, so two triggerers that select at the same
moment both get the same triggers and the later UPDATE wins. The first has started them by then; at its
next loop it cancels what it lost, and Airflow 3.3 calls ``on_kill`` for a cancelled trigger (whatever
the reason: apache/airflow#73454 is open), which stops the container the other triggerer now watches
(seen in tests/airflow/test_two_triggerers.py: a task left deferred, its try stopped before its launch).
``keep_live_assignments`` adds a SQLite trigger that skips such an UPDATE row by row (what SKIP LOCKED
gives PostgreSQL): a trigger whose triggerer is alive by Airflow's own test (no end date, a heartbeat
within ``[triggerer] triggerer_health_check_threshold``, 30 s) keeps it; one whose triggerer is dead is
taken over as before, and clearing ``triggerer_id`` is never refused.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

_PRIMARY_KEY = re.compile(r",\s*CONSTRAINT \w+ PRIMARY KEY \(id\)", re.IGNORECASE)
_ID_COLUMN = re.compile(r"\bid INTEGER NOT NULL\b", re.IGNORECASE)


def never_reuse_trigger_ids(database: Path) -> bool:
    """Rebuild ``trigger`` with ``id INTEGER PRIMARY KEY AUTOINCREMENT``; False when it has it already."""
    db = sqlite3.connect(database, isolation_level=None)  # transactions as written below
    try:
        row = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'trigger'").fetchone()
        if row is None or "AUTOINCREMENT" in row[0].upper():
            return False
        create = row[0]
        if not (_PRIMARY_KEY.search(create) and _ID_COLUMN.search(create)):
            raise RuntimeError(f"Airflow's trigger table is not as expected, not rebuilt: {create}")
        rebuilt = _ID_COLUMN.sub("id INTEGER PRIMARY KEY AUTOINCREMENT", _PRIMARY_KEY.sub("", create), count=1)
        rebuilt = rebuilt.replace('CREATE TABLE "trigger"', 'CREATE TABLE "trigger_rebuilt"', 1)
        indexes = [sql for (sql,) in db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'trigger' AND sql IS NOT NULL"
        )]  # fmt: skip
        columns = ", ".join(f'"{name}"' for (_, name, *_rest) in db.execute('PRAGMA table_info("trigger")'))
        db.execute("PRAGMA foreign_keys = OFF")  # outside a transaction, or it is ignored
        db.execute("BEGIN")
        db.execute(rebuilt)
        db.execute(f'INSERT INTO "trigger_rebuilt" ({columns}) SELECT {columns} FROM "trigger"')
        db.execute('DROP TABLE "trigger"')
        db.execute('ALTER TABLE "trigger_rebuilt" RENAME TO "trigger"')
        for index in indexes:
            db.execute(index)
        problems = db.execute("PRAGMA foreign_key_check").fetchall()
        if problems:
            db.execute("ROLLBACK")
            raise RuntimeError(f"rebuilding Airflow's trigger table broke foreign keys: {problems}")
        db.execute("COMMIT")
    finally:
        db.close()
    return True


HEALTH_CHECK_THRESHOLD_SECONDS = 30  # Airflow's [triggerer] triggerer_health_check_threshold (the stack keeps it)
_KEEP_LIVE_ASSIGNMENTS = f"""
CREATE TRIGGER IF NOT EXISTS airlaunch_keep_live_assignments
BEFORE UPDATE OF triggerer_id ON "trigger"
WHEN OLD.triggerer_id IS NOT NULL AND NEW.triggerer_id IS NOT NULL AND NEW.triggerer_id != OLD.triggerer_id
  AND EXISTS (
    SELECT 1 FROM job WHERE job.id = OLD.triggerer_id AND job.end_date IS NULL
      AND job.latest_heartbeat > strftime('%Y-%m-%d %H:%M:%f', 'now', '-{HEALTH_CHECK_THRESHOLD_SECONDS} seconds')
  )
BEGIN
  SELECT RAISE(IGNORE);
END
"""


def keep_live_assignments(database: Path) -> bool:
    """Add the SQLite trigger that keeps a trigger with its live triggerer (see above); False when it is there.
    (Airflow writes its timestamps on SQLite as UTC text, 'YYYY-MM-DD HH:MM:SS.ffffff', compared as text.)"""
    db = sqlite3.connect(database, isolation_level=None)
    try:
        exists = "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = 'airlaunch_keep_live_assignments'"
        if db.execute(exists).fetchone() is not None:
            return False
        db.execute(_KEEP_LIVE_ASSIGNMENTS)
    finally:
        db.close()
    return True
