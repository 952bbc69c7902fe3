#!/usr/bin/env python3
"""Cold start and idle memory of `basalt serve` on embedded defaults.

Starts the release binary N times on a fresh SQLite data dir (after one `superuser upsert`), measures the
time from exec to the first 200 from /api/health and the RSS right after, and prints a Markdown table.
Usage: bench/startup.py [--runs 5] [--bin PATH]   (default bin: $CARGO_TARGET_DIR/release/basalt)
"""
import argparse, os, socket, statistics, subprocess, tempfile, time, urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--runs", type=int, default=5)
target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/basalt/target"))
ap.add_argument("--bin", default=os.path.join(target, "release", "basalt"))
a = ap.parse_args()

d = tempfile.mkdtemp(prefix="basalt-startup-")
subprocess.run([a.bin, "superuser", "upsert", "a@example.com", "password123", "--dir", d], check=True, stdout=subprocess.DEVNULL)
rows = []
for _ in range(a.runs):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    t = time.perf_counter()
    p = subprocess.Popen([a.bin, "serve", "--dir", d, "--http", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=0.2).read()
            break
        except Exception:
            if time.perf_counter() - t > 10:
                raise SystemExit("server did not start")
            time.sleep(0.001)
    ms = (time.perf_counter() - t) * 1000
    rss = next(int(l.split()[1]) for l in open(f"/proc/{p.pid}/status") if l.startswith("VmRSS")) / 1024
    rows.append((ms, rss))
    p.terminate(); p.wait()
print("| metric | median | min | max | target |")
print("|---|---:|---:|---:|---:|")
ms = [r[0] for r in rows]; rss = [r[1] for r in rows]
print(f"| cold start to first healthy answer (ms) | {statistics.median(ms):.1f} | {min(ms):.1f} | {max(ms):.1f} | < 100 |")
print(f"| idle RSS (MB) | {statistics.median(rss):.1f} | {min(rss):.1f} | {max(rss):.1f} | < 30 |")
