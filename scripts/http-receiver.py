#!/usr/bin/env python3
"""A counting HTTP receiver for scripts/measure-http-sink.sh (Python standard
library only): accepts every POST with 200, except during the first OUTAGE_SECS
seconds after it starts, when it answers 503 with `Retry-After: 1`.

    http-receiver.py PORT_FILE STATS_FILE [OUTAGE_SECS]

Writes the port it listens on (127.0.0.1, ephemeral) to PORT_FILE, and after
every accepted request a line `requests bytes first_ok last_ok` to STATS_FILE
(times in Unix seconds), so the script reads the totals without stopping it.
"""
import http.server
import sys
import threading
import time

port_file, stats_file = sys.argv[1], sys.argv[2]
outage = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
started = time.time()
lock = threading.Lock()
stats = {"requests": 0, "bytes": 0, "first": 0.0, "last": 0.0, "refused": 0}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, extra=()):
        self.send_response(code)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        self.reply(200)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        now = time.time()
        if now - started < outage:
            with lock:
                stats["refused"] += 1
            self.reply(503, [("Retry-After", "1")])
            return
        with lock:
            stats["requests"] += 1
            stats["bytes"] += len(body)
            stats["first"] = stats["first"] or now
            stats["last"] = now
            line = "%d %d %.3f %.3f %d\n" % (
                stats["requests"], stats["bytes"], stats["first"], stats["last"], stats["refused"])
            with open(stats_file, "w") as f:
                f.write(line)
        self.reply(200)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(port_file, "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
