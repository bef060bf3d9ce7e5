#!/usr/bin/env python3
"""sqlite: a WAL-mode SQLite database (python's sqlite3 module) receiving
transactions that stay open for a while (half the rows, a pause, the other
half, then the ledger update and commit), so a checkpoint often lands inside a
transaction. Invariants, checked after every commit by the writer and by a
second connection (which must never see a half-done transaction):
count(*) == ledger.rows, sum(v) == ledger.total, every batch has ROWS rows
summing to the batch's known total, and ledger.batches equals the writer's own
count. Old batches are deleted (in transactions that also update the ledger)
to bound the file size. argv[1] is the status path."""
import json
import os
import sqlite3
import sys
import time

STATUS = sys.argv[1]
DIR = os.path.dirname(os.path.abspath(STATUS))
DB = os.path.join(DIR, "bank.db")
ROWS = 20
KEEP = 500

error = None


def fail(msg):
    global error
    if error is None:
        error = msg


def batch_total(b):
    return sum(b * 1000 + k for k in range(ROWS))


def write_status(progress, extra):
    body = {"name": "sqlite", "pid": os.getpid(), "progress": progress, "ok": error is None, "error": error}
    body.update(extra)
    tmp = f"{STATUS}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(json.dumps(body) + "\n")
    os.rename(tmp, STATUS)


def check(conn, who, want_batches=None):
    rows, total, batches = conn.execute("SELECT rows, total, batches FROM ledger WHERE id = 1").fetchone()
    cnt, s = conn.execute("SELECT count(*), coalesce(sum(v), 0) FROM t").fetchone()
    if cnt != rows:
        fail(f"{who}: count(*) is {cnt}, ledger says {rows}")
    elif s != total:
        fail(f"{who}: sum(v) is {s}, ledger says {total}")
    elif want_batches is not None and batches != want_batches:
        fail(f"{who}: ledger has {batches} batches, the writer committed {want_batches}")
    bad = conn.execute(
        "SELECT batch, count(*), sum(v) FROM t GROUP BY batch HAVING count(*) != ? ORDER BY batch LIMIT 1", (ROWS,)
    ).fetchone()
    if bad:
        fail(f"{who}: batch {bad[0]} has {bad[1]} rows, expected {ROWS} (partial transaction visible)")
    return batches


def main():
    pid = os.getpid()
    w = sqlite3.connect(DB, isolation_level=None, timeout=30)
    w.execute("PRAGMA journal_mode=WAL")
    w.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, batch INTEGER NOT NULL, v INTEGER NOT NULL)")
    w.execute("CREATE INDEX IF NOT EXISTS t_batch ON t(batch)")
    w.execute("CREATE TABLE IF NOT EXISTS ledger (id INTEGER PRIMARY KEY, rows INTEGER, total INTEGER, batches INTEGER)")
    w.execute("INSERT OR IGNORE INTO ledger VALUES (1, 0, 0, 0)")
    r = sqlite3.connect(DB, isolation_level=None, timeout=30)
    committed = 0
    deleted = 0
    reader_checks = 0
    last_status = 0.0
    b = 0
    while True:
        try:
            w.execute("BEGIN IMMEDIATE")
            for k in range(ROWS // 2):
                w.execute("INSERT INTO t (batch, v) VALUES (?, ?)", (b, b * 1000 + k))
            # the reader must not see the half-done batch
            if r.execute("SELECT count(*) FROM t WHERE batch = ?", (b,)).fetchone()[0] != 0:
                fail(f"reader sees uncommitted rows of batch {b}")
            time.sleep(0.02)  # stay inside the transaction for a while
            for k in range(ROWS // 2, ROWS):
                w.execute("INSERT INTO t (batch, v) VALUES (?, ?)", (b, b * 1000 + k))
            w.execute(
                "UPDATE ledger SET rows = rows + ?, total = total + ?, batches = batches + 1 WHERE id = 1",
                (ROWS, batch_total(b)),
            )
            w.execute("COMMIT")
            committed += 1
            b += 1
            if b > KEEP and b % 50 == 0:
                old = b - KEEP
                w.execute("BEGIN IMMEDIATE")
                n, s = w.execute("SELECT count(*), coalesce(sum(v), 0) FROM t WHERE batch < ?", (old,)).fetchone()
                w.execute("DELETE FROM t WHERE batch < ?", (old,))
                w.execute("UPDATE ledger SET rows = rows - ?, total = total - ? WHERE id = 1", (n, s))
                w.execute("COMMIT")
                deleted += n
            check(w, "writer", committed)
            check(r, "reader")
            reader_checks += 1
        except sqlite3.Error as e:
            fail(f"sqlite error: {e}")
            try:
                w.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            time.sleep(0.1)
        if os.getpid() != pid:
            fail("getpid() changed")
        now = time.monotonic()
        if now - last_status > 0.05:
            last_status = now
            write_status(committed, {"pids": [pid], "committed": committed, "rows_deleted": deleted,
                                     "reader_checks": reader_checks, "db": DB})


main()
