"""Drydock's demo preview app.

It keeps a visit counter in memory, so a preview that survives its machine's
sleep and wake shows the count carrying on where it stopped. It listens on
127.0.0.1:$PORT (the local Dedalus emulator gives every machine a PORT; the
spec's app.port, 3000, otherwise) and shows the commit it was deployed from
($DRYDOCK_SHA, set by Drydock). Standard library only.
"""

import html
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("PORT", "3000"))
SHA = os.environ.get("DRYDOCK_SHA", "")
STARTED = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
visits = 0
lock = threading.Lock()


def revision():
    """The checked-out commit, for when DRYDOCK_SHA is not set."""
    if SHA:
        return SHA
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except Exception:
        return "unknown"


class Handler(BaseHTTPRequestHandler):
    def _send(self, status, ctype, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        global visits
        if self.path == "/healthz":
            return self._send(200, "text/plain", "ok\n")
        if self.path in ("/", "/count"):
            with lock:
                visits += 1
                n = visits
            if self.path == "/count":
                body = json.dumps({"count": n, "pid": os.getpid(), "sha": revision(), "started": STARTED})
                return self._send(200, "application/json", body)
            page = (
                "<!doctype html><title>Drydock preview</title><h1>Drydock preview</h1>"
                f"<p>commit <code id=sha>{html.escape(revision())}</code></p>"
                f"<p>visits since start: <b id=visits>{n}</b></p><p>process started {STARTED}</p>"
            )
            return self._send(200, "text/html; charset=utf-8", page)
        self._send(404, "text/plain", "not found\n")

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))


class Server(ThreadingHTTPServer):
    # The default backlog (5) refuses bursts of first requests after a wake.
    request_queue_size = 512
    daemon_threads = True


if __name__ == "__main__":
    print(f"previewapp listening on 127.0.0.1:{PORT} (commit {revision()})", flush=True)
    Server(("127.0.0.1", PORT), Handler).serve_forever()
