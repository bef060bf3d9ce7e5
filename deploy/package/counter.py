#!/usr/bin/env python3
"""A workload to try ferry with (docs/operators.md): it counts in memory, ten times a second,
and answers every HTTP GET with its state as one JSON line:

    {"instance": "<random, chosen at start>", "count": N, "started": "<ISO time>"}

A migration that carried the process keeps its instance and its count, which goes on growing;
a restart would show a new instance and a count from zero. Usage: counter.py [PORT] (8080)."""
import json
import sys
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer

state = {"instance": uuid.uuid4().hex, "count": 0, "started": datetime.now(timezone.utc).isoformat()}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = (json.dumps(state) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = HTTPServer(("0.0.0.0", int(sys.argv[1]) if len(sys.argv) > 1 else 8080), Handler)
server.timeout = 0.1
next_tick = time.monotonic()
while True:
    server.handle_request()  # one request, or nothing within 0.1 s
    now = time.monotonic()
    while now >= next_tick:
        state["count"] += 1
        next_tick += 0.1
