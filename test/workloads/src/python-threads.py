#!/usr/bin/env python3
"""python-threads: 3 threads each extend a SHA-256 hash chain and append one
JSON record per link to records.jsonl (O_APPEND, shared, under a lock).
The main thread reads the file incrementally through its own open file
object (its offset must survive) and verifies every record: per-thread
sequence continuity and the hash chain recomputed from scratch. Each thread
also checks that its native thread id never changes and that its in-memory
chain head matches what it last wrote. argv[1] is the status path."""
import hashlib
import json
import os
import sys
import threading
import time

STATUS = sys.argv[1]
DIR = os.path.dirname(os.path.abspath(STATUS))
RECORDS = os.path.join(DIR, "records.jsonl")
NTHREADS = 3
WRAP_BYTES = 4 << 20

lock = threading.Lock()
error = None
progress = [0] * NTHREADS
tids = [0] * NTHREADS


def fail(msg):
    global error
    with err_lock:
        if error is None:
            error = msg


err_lock = threading.Lock()


def link(prev, t, n):
    return hashlib.sha256(f"{prev}:{t}:{n}".encode()).hexdigest()


def genesis(t):
    return hashlib.sha256(f"genesis-{t}".encode()).hexdigest()


out = open(RECORDS, "ab", buffering=0)
reader = open(RECORDS, "rb", buffering=0)


def worker(t):
    tid = threading.get_native_id()
    tids[t] = tid
    head = genesis(t)
    n = 0
    while True:
        # some CPU work per record
        h = head
        for _ in range(200):
            h = hashlib.sha256(h.encode()).hexdigest()
        new = link(head, t, n)
        rec = json.dumps({"t": t, "n": n, "prev": head, "h": new, "w": h[:16]}) + "\n"
        with lock:
            out.write(rec.encode())
        head = new
        n += 1
        progress[t] = n
        if threading.get_native_id() != tid:
            fail(f"thread {t}: native thread id changed from {tid} to {threading.get_native_id()}")
        time.sleep(0.005)


def write_status(verified, wraps):
    body = {
        "name": "python-threads",
        "pid": os.getpid(),
        "progress": sum(progress),
        "ok": error is None,
        "error": error,
        "pids": [os.getpid()],
        "threads": [{"index": i, "tid": tids[i], "records": progress[i]} for i in range(NTHREADS)],
        "verified": verified,
        "wraps": wraps,
    }
    tmp = f"{STATUS}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(json.dumps(body) + "\n")
    os.rename(tmp, STATUS)


def main():
    pid = os.getpid()
    for t in range(NTHREADS):
        threading.Thread(target=worker, args=(t,), daemon=True).start()
    expect_n = [0] * NTHREADS
    expect_prev = [genesis(t) for t in range(NTHREADS)]
    verified = 0
    wraps = 0
    pos = 0
    partial = b""
    out_ino = os.fstat(out.fileno()).st_ino
    while True:
        if reader.tell() != pos:
            fail(f"records reader offset is {reader.tell()}, expected {pos}")
        chunk = reader.read(1 << 20) or b""
        pos += len(chunk)
        data = partial + chunk
        lines = data.split(b"\n")
        partial = lines.pop()
        for line in lines:
            try:
                r = json.loads(line)
                t, n = r["t"], r["n"]
            except (ValueError, KeyError, TypeError):
                fail(f"records.jsonl: unparsable record at verified={verified}: {line[:60]!r}")
                continue
            if not (isinstance(t, int) and 0 <= t < NTHREADS):
                fail(f"records.jsonl: bad thread index {t!r}")
                continue
            if n != expect_n[t]:
                fail(f"thread {t}: record {n} follows {expect_n[t] - 1} (gap or duplicate)")
            elif r["prev"] != expect_prev[t] or r["h"] != link(expect_prev[t], t, n):
                fail(f"thread {t}: hash chain broken at record {n}")
            expect_n[t] = n + 1
            expect_prev[t] = r["h"]
            verified += 1
        if os.getpid() != pid:
            fail(f"getpid() changed from {pid} to {os.getpid()}")
        try:
            st = os.stat(RECORDS)
            if st.st_ino != out_ino or os.fstat(out.fileno()).st_ino != out_ino:
                fail("records.jsonl fd no longer refers to the file at its path")
        except OSError as e:
            fail(f"stat records.jsonl: {e}")
        if pos >= WRAP_BYTES and error is None:
            with lock:
                rest = reader.read() or b""
                data = partial + rest
                for line in data.split(b"\n")[:-1]:
                    r = json.loads(line)
                    t, n = r["t"], r["n"]
                    if n != expect_n[t] or r["h"] != link(expect_prev[t], t, n):
                        fail(f"thread {t}: record {n} wrong before wrap")
                    expect_n[t] = n + 1
                    expect_prev[t] = r["h"]
                    verified += 1
                partial = b""
                os.ftruncate(out.fileno(), 0)
                reader.seek(0)
                pos = 0
                wraps += 1
        write_status(verified, wraps)
        time.sleep(0.05)


main()
