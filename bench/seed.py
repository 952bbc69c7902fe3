#!/usr/bin/env python3
"""Seed a PocketBase-protocol server (PocketBase or Basalt) for bench/run.sh.

Python stdlib only. Talks the PocketBase HTTP API, so the same script seeds both
servers with the same data:

  1. auth as superuser  POST /api/collections/_superusers/auth-with-password
  2. optionally PATCH /api/settings {"logs":{"maxDays":N}}   (--logs-max-days)
  3. create collection `posts` (title text, score number, status text,
     created/updated autodate, index on score, list/view/create rules public)
  4. insert --count records concurrently (thread pool, one keep-alive
     connection per thread), deterministic values: title "post <i>",
     score = i % 1000, status alternating 'a'/'b'
  5. print the id of record i = count // 2 as the LAST line of stdout
     (progress and timings go to stderr)

Exit status is non-zero on any failed request.
"""

import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor


def log(*a):
    print("seed:", *a, file=sys.stderr, flush=True)


class Client:
    """One keep-alive HTTP/1.1 connection per thread."""

    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.host = u.hostname
        self.port = u.port or 80
        self.token = None
        self._local = threading.local()

    def _conn(self, fresh=False):
        c = getattr(self._local, "conn", None)
        if c is None or fresh:
            if c is not None:
                c.close()
            c = http.client.HTTPConnection(self.host, self.port, timeout=60)
            self._local.conn = c
        return c

    def request(self, method, path, body=None):
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = self.token
        for attempt in (0, 1):
            conn = self._conn(fresh=attempt > 0)
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (http.client.HTTPException, ConnectionError, OSError):
                if attempt:
                    raise
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return resp.status, parsed

    def ok(self, method, path, body=None, expect=(200,)):
        status, parsed = self.request(method, path, body)
        if status not in expect:
            raise RuntimeError(f"{method} {path} -> HTTP {status}: {parsed}")
        return status, parsed


COLLECTION = {
    "name": "posts",
    "type": "base",
    "fields": [
        {"name": "title", "type": "text"},
        {"name": "score", "type": "number"},
        {"name": "status", "type": "text"},
        {"name": "created", "type": "autodate", "onCreate": True, "onUpdate": False},
        {"name": "updated", "type": "autodate", "onCreate": True, "onUpdate": True},
    ],
    "indexes": ["CREATE INDEX idx_posts_score ON posts (score)"],
    "listRule": "",
    "viewRule": "",
    "createRule": "",
}


def record(i):
    return {"title": f"post {i}", "score": i % 1000, "status": "a" if i % 2 == 0 else "b"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:18090")
    ap.add_argument("--email", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--logs-max-days", type=int, default=None,
                    help="PATCH /api/settings logs.maxDays (0 disables PocketBase request logs)")
    ap.add_argument("--show-logs-settings", action="store_true",
                    help="print the server's logs settings (GET /api/settings) to stderr")
    args = ap.parse_args()

    cl = Client(args.url)
    _, auth = cl.ok("POST", "/api/collections/_superusers/auth-with-password",
                    {"identity": args.email, "password": args.password})
    cl.token = auth["token"]
    log("superuser auth ok")

    if args.logs_max_days is not None:
        _, s = cl.ok("PATCH", "/api/settings", {"logs": {"maxDays": args.logs_max_days}})
        log("settings.logs after PATCH:", json.dumps(s.get("logs")))
    elif args.show_logs_settings:
        status, s = cl.request("GET", "/api/settings")
        if status == 200 and isinstance(s, dict):
            log("settings.logs (server defaults):", json.dumps(s.get("logs")))
        else:
            log(f"GET /api/settings -> HTTP {status} (logs settings unknown)")

    t0 = time.monotonic()
    cl.ok("POST", "/api/collections", COLLECTION)
    log(f"collection posts created in {(time.monotonic() - t0) * 1000:.0f} ms")

    path = "/api/collections/posts/records"
    statuses = {}
    lock = threading.Lock()

    def insert(i):
        status, rec = cl.ok("POST", path, record(i), expect=(200, 201))
        with lock:
            statuses[status] = statuses.get(status, 0) + 1
        return i, rec["id"]

    pick = args.count // 2
    picked = None
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        for i, rid in pool.map(insert, range(args.count)):
            if i == pick:
                picked = rid
    dt = time.monotonic() - t0
    log(f"inserted {args.count} records in {dt:.2f} s ({args.count / dt:.0f} records/s, "
        f"{args.workers} workers); create status codes: {statuses}")

    # Sanity checks on what the benchmark will hit (as a guest, like wrk does).
    cl.token = None
    _, rec = cl.ok("GET", f"{path}/{picked}")
    assert rec["score"] == pick % 1000, rec
    q = urllib.parse.urlencode({"filter": "(score>500)", "sort": "-score", "perPage": 20, "skipTotal": 1})
    _, lst = cl.ok("GET", f"{path}?{q}")
    assert len(lst["items"]) == 20 and lst["items"][0]["score"] == 999, lst
    log(f"checks ok; read-test id = record #{pick}")
    print(picked)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001
        log("FAILED:", e)
        sys.exit(1)
