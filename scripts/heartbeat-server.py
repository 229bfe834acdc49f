#!/usr/bin/env python3
"""A stand-in for Performance Studio's heartbeat API, for scripts/measure-control.sh.

    heartbeat-server.py PORT DIR

POST /api/metrics/heartbeat answers with DIR/reply.json (read at every heartbeat;
absent: no command). If that file holds {"mode": "stops"}, every heartbeat gets a
new stop command `stop-N`. POST /api/metrics/command_completion answers
{"success": true}. Every request is appended to DIR/events.log as
`<unix time> <heartbeat|completion> <command id or -> <status or ->`.
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, DIR = int(sys.argv[1]), sys.argv[2]
LOCK = threading.Lock()
COUNTER = [0]


def log(kind, cid="-", status="-"):
    with LOCK, open(os.path.join(DIR, "events.log"), "a") as f:
        f.write(f"{time.time():.3f} {kind} {cid} {status}\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(n) or b"{}")
        if self.path == "/api/metrics/command_completion":
            log("completion", body.get("command_id"), body.get("status"))
            return self.reply({"success": True, "message": "ok"})
        if self.path != "/api/metrics/heartbeat":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        try:
            with open(os.path.join(DIR, "reply.json")) as f:
                reply = json.load(f)
        except (OSError, ValueError):
            reply = {"success": True, "message": "idle", "profiling_command": None, "command_id": None}
        if reply.get("mode") == "stops":
            with LOCK:
                COUNTER[0] += 1
                cid = f"stop-{COUNTER[0]}"
            reply = {"success": True, "message": "stop", "command_id": cid,
                     "profiling_command": {"command_type": "stop", "combined_config": {}}}
        log("heartbeat", reply.get("command_id") or "-")
        self.reply(reply)


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
