#!/usr/bin/env bash
# Checks the observability kit in deploy/observability/: the alert rules and the Prometheus config
# (promtool), the alert unit tests (promtool test rules), and that the Grafana dashboard parses and
# that every metric and label its queries and the alerts use is one Basalt exposes.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=deploy/observability

if ! command -v promtool >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing promtool (Debian package prometheus)" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "promtool not found: apt-get install prometheus (or put promtool from a Prometheus release on PATH)" >&2
    exit 1
  fi
fi
command -v python3 >/dev/null || { echo "python3 not found" >&2; exit 1; }

echo "== promtool check rules"
promtool check rules "$dir/alerts.yml"
echo "== promtool check config"
promtool check config "$dir/prometheus.yml"
echo "== promtool test rules"
promtool test rules "$dir/alerts.test.yml"

echo "== dashboard and metric names"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 - "$dir/grafana-dashboard.json" "$dir/alerts.yml" "$tmp/dashboard-rules.yml" <<'PY'
import json
import re
import sys

dashboard_path, alerts_path, rules_out = sys.argv[1:4]

# What Basalt exposes (crates/service/src/metrics.rs): name -> labels, besides instance and job.
GAUGES = {
    "http_server_active_requests": {"http_request_method"},
    "basalt_store_connections": {"state"},
    "basalt_store_connections_max": set(),
    "basalt_redis_up": set(),
    "basalt_realtime_connections": {"transport"},
    "basalt_realtime_subscriptions": set(),
    "basalt_outbox_events": set(),
    "basalt_outbox_high_water": set(),
    "basalt_outbox_oldest_undelivered_seconds": set(),
    "basalt_sink_leader": {"sink"},
    "basalt_sink_lag_events": {"sink"},
    "basalt_sink_lag_seconds": {"sink"},
    "basalt_cluster_nodes": {"state"},
    "basalt_build_info": {"version", "commit"},
    "process_resident_memory_bytes": set(),
    "process_open_fds": set(),
    "process_max_fds": set(),
    "process_start_time_seconds": set(),
    "up": set(),  # Prometheus' own, per target
}
COUNTERS = {
    "basalt_record_operations_total": {"collection", "action", "outcome"},
    "basalt_auth_signins_total": {"method", "outcome"},
    "basalt_rate_limit_refusals_total": {"rule"},
    "basalt_auth_lockouts_total": set(),
    "basalt_auth_lockout_refusals_total": set(),
    "basalt_store_read_timeouts_total": set(),
    "basalt_cache_requests_total": {"layer", "result"},
    "basalt_cache_evictions_total": {"layer"},
    "basalt_realtime_dropped_clients_total": set(),
    "basalt_sink_delivered_events_total": {"sink"},
    "basalt_sink_failures_total": {"sink"},
    "basalt_webhook_deliveries_total": {"outcome"},
    "basalt_request_logs_total": {"outcome"},
    "basalt_trace_spans_total": {"outcome"},
    "basalt_trace_export_failures_total": set(),
    "process_cpu_seconds_total": set(),
}
HISTOGRAMS = {
    "http_server_request_duration_seconds": {"http_request_method", "http_route", "http_response_status_code"},
    "http_server_request_body_size_bytes": {"http_request_method", "http_route"},
    "http_server_response_body_size_bytes": {"http_request_method", "http_route"},
    "basalt_rule_compile_duration_seconds": set(),
    "basalt_store_query_duration_seconds": {"kind"},
    "basalt_store_connection_wait_seconds": {"kind"},
    "basalt_store_transaction_duration_seconds": set(),
    "basalt_store_group_commit_size": set(),
    "basalt_store_group_commit_duration_seconds": set(),
    "basalt_realtime_fanout_duration_seconds": set(),
}
SERIES = {**GAUGES, **COUNTERS}
for h, labels in HISTOGRAMS.items():
    SERIES[h + "_bucket"] = labels | {"le"}
    SERIES[h + "_sum"] = labels
    SERIES[h + "_count"] = labels
COMMON_LABELS = {"instance", "job", "__name__"}
ALL_LABELS = set().union(*SERIES.values()) | COMMON_LABELS
# Labels a query may make up itself (label_replace targets).
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
            "offset", "bool", "inf", "nan"}

errors = []


def strip_strings(expr):
    return re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)


def check_expr(where, expr):
    """Every metric name in expr is one Basalt exposes, every label in its matchers belongs to that
    metric, and every label in by/on/without/ignoring/group_x clauses is a known one."""
    e = strip_strings(expr)
    e = re.sub(r"\[[^\]]*\]", "", e)  # range and subquery windows ([5m], [$__rate_interval])
    grouping = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
    for m in grouping.finditer(e):
        for label in filter(None, (x.strip() for x in m.group(2).split(","))):
            if label not in ALL_LABELS:
                errors.append(f"{where}: unknown label {label!r} in {m.group(1)}(...): {expr}")
    e = grouping.sub(" ", e)
    names = []
    # metric{matchers}, or a bare {matchers} selector
    for m in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^}]*)\}", e):
        name = m.group(1)
        labels = {x.group(1) for x in re.finditer(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", m.group(2))}
        if name and name not in KEYWORDS:
            names.append(name)
            for label in labels - SERIES.get(name, ALL_LABELS) - COMMON_LABELS:
                errors.append(f"{where}: {name} has no label {label!r}: {expr}")
        else:
            for label in labels - ALL_LABELS:
                errors.append(f"{where}: unknown label {label!r}: {expr}")
    e = re.sub(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{[^}]*\}", " ", e)
    for m in re.finditer(r"(?<![\w$.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in KEYWORDS:
            continue  # a function or an aggregation, or an operator
        names.append(word)
    for name in names:
        if name not in SERIES:
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            hint = " (a histogram: use _bucket, _sum or _count)" if name in HISTOGRAMS else ""
            hint = hint or (f" (did you mean {base}_bucket/_sum/_count?)" if base in HISTOGRAMS else "")
            errors.append(f"{where}: {name!r} is not a metric Basalt exposes{hint}: {expr}")
    return names


# ---- the dashboard
with open(dashboard_path) as f:
    try:
        dash = json.load(f)
    except json.JSONDecodeError as e:
        sys.exit(f"{dashboard_path}: not valid JSON: {e}")

variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
ds = [v for v in variables.values() if v.get("type") == "datasource" and v.get("query") == "prometheus"]
if not ds:
    errors.append("dashboard: no Prometheus data source variable (type datasource)")
for name in ("instance", "route"):
    v = variables.get(name)
    if not v or "label_values(" not in json.dumps(v.get("query")):
        errors.append(f"dashboard: no {name!r} variable from label_values(...)")
for name, v in variables.items():
    q = v.get("query")
    q = q.get("query") if isinstance(q, dict) else q
    m = re.match(r"\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$", q or "")
    if m:
        check_expr(f"dashboard variable {name}", m.group(1))
        if m.group(2) not in ALL_LABELS:
            errors.append(f"dashboard variable {name}: unknown label {m.group(2)!r}")


def walk(panels):
    for p in panels:
        yield p
        yield from walk(p.get("panels", []))


ids, exprs, used = set(), 0, set()
as_rules = []  # the dashboard's queries, Grafana variables filled in, for promtool to parse
for p in walk(dash.get("panels", [])):
    pid = p.get("id")
    if pid in ids:
        errors.append(f"dashboard: duplicate panel id {pid}")
    ids.add(pid)
    if p.get("type") == "row":
        continue
    if not p.get("gridPos"):
        errors.append(f"dashboard panel {p.get('title')!r}: no gridPos")
    if not p.get("targets"):
        errors.append(f"dashboard panel {p.get('title')!r}: no queries")
    for t in p.get("targets", []):
        expr = t.get("expr", "")
        if not expr.strip():
            errors.append(f"dashboard panel {p.get('title')!r}: empty query")
            continue
        exprs += 1
        filled = expr.replace("$__rate_interval", "5m").replace("$job", "basalt")
        filled = re.sub(r"\$\{?(instance|route)\}?", ".*", filled)
        as_rules.append({"record": f"dashboard:panel_{pid}:{t.get('refId', 'A')}", "expr": filled})
        where = f"dashboard panel {p.get('title')!r}"
        used.update(check_expr(where, expr))
        for w in re.findall(r"\b(?:rate|irate|increase)\([^\[]*\[([^\]]*)\]", strip_strings(expr)):
            if w != "$__rate_interval":
                errors.append(f"{where}: rate window [{w}] (use [$__rate_interval]): {expr}")
        if expr.count("(") != expr.count(")"):
            errors.append(f"{where}: unbalanced parentheses: {expr}")

# ---- the alerts
try:
    import yaml

    with open(alerts_path) as f:
        alert_exprs = [(r.get("alert") or r.get("record"), r["expr"])
                       for g in yaml.safe_load(f)["groups"] for r in g["rules"]]
except ImportError:  # no PyYAML: read the expr: fields (inline or block scalars) directly
    alert_exprs, lines = [], open(alerts_path).read().splitlines()
    name = None
    for i, line in enumerate(lines):
        m = re.match(r"\s*-?\s*(alert|record):\s*(\S+)", line)
        if m:
            name = m.group(2)
        m = re.match(r"(\s*)expr:\s*(.*)$", line)
        if not m:
            continue
        if m.group(2) and m.group(2)[0] not in "|>":
            alert_exprs.append((name, m.group(2)))
            continue
        body, indent = [], len(m.group(1))
        for nxt in lines[i + 1:]:
            if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                break
            body.append(nxt)
        alert_exprs.append((name, "\n".join(body)))
for name, expr in alert_exprs:
    used.update(check_expr(f"alert {name}", expr))

with open(rules_out, "w") as f:  # JSON is YAML
    json.dump({"groups": [{"name": "dashboard", "rules": as_rules}]}, f, indent=1)

if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
unused = sorted(set(SERIES) - used - {h + s for h in HISTOGRAMS for s in ("_sum", "_count")})
print(f"  dashboard: {len(ids)} panels, {exprs} queries; alerts: {len(alert_exprs)} rules; all metric and label names known")
if unused:
    print(f"  (not used anywhere: {', '.join(unused)})")
PY
echo "== dashboard queries parse (promtool check rules on them as recording rules)"
promtool check rules "$tmp/dashboard-rules.yml" | sed "s|$tmp/||"
echo "observability kit OK"
