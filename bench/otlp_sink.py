#!/usr/bin/env python3
"""A stand-in OTLP/HTTP collector for the bench (no collector binary is installable here): accepts
POST /v1/traces, answers 200 with an empty ExportTraceServiceResponse, and counts requests and bytes
(printed to stdout on SIGTERM). It does not decode: the tracing test checks the protobuf itself.

Usage: otlp_sink.py PORT
"""
import http.server
import signal
import sys

count = {"requests": 0, "bytes": 0}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        self.rfile.read(n)
        count["requests"] += 1
        count["bytes"] += n
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    port = int(sys.argv[1])
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)

    def stop(*_):
        print(f"otlp sink: {count['requests']} export requests, {count['bytes']} bytes", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    srv.serve_forever()


if __name__ == "__main__":
    main()
