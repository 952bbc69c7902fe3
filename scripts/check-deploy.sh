#!/usr/bin/env bash
# Checks the deployment files in deploy/ without a container engine or a cluster:
#   - deploy/Dockerfile: its cargo build line is the README's (and scripts/serve.sh's), the image runs
#     as a non-root user, and ENTRYPOINT, EXPOSE and HEALTHCHECK agree on the port and probe path;
#   - the basalt.toml files (compose, Kubernetes): only keys that crates/basalt/src/settings.rs accepts,
#     networks that parse; every BASALT_* variable and --flag the files set exists in the binary's code;
#   - deploy/compose.yaml: parses, every service has an image, mounted files exist, depends_on, the
#     HAProxy servers and the Prometheus targets name its services; the Grafana provisioning files;
#     haproxy -c on deploy/haproxy/haproxy.cfg and promtool check config on deploy/compose/prometheus.yml
#     (each when the tool is installed, else said and skipped);
#   - deploy/k8s: renders every overlay with `kubectl kustomize` and validates the output with
#     `kubernetes-validate --strict` against Kubernetes $K8S_VERSION (a kind without a schema fails);
#     ServiceMonitor and PrometheusRule (monitoring.coreos.com CRDs, which kubernetes-validate has no
#     schemas for and would only warn about) are taken out of that run and checked here instead:
#     apiVersion/kind/metadata.name/spec, the ServiceMonitor's selector and port against the rendered
#     Services, the PrometheusRule's groups equal to deploy/observability/alerts.yml's; then what
#     the manifests promise: probes on /livez and /readyz, a grace period covering preStop + drain
#     delay + deadline (the defaults read from the code), non-root and read-only root filesystem,
#     selectors that match, workers outside the API Service, one SQLite replica, the canary's image.
# kubernetes-validate is installed once into $BASALT_TOOLS/venv-deploy (default
# ~/.cache/basalt/tools/venv-deploy). Exits non-zero on the first failing step.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT="${BASALT_TOOLS:-$HOME/.cache/basalt/tools}"
VENV="$ROOT/venv-deploy"
KV_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"
# The Kubernetes version the manifests are validated against (kubectl's here is 1.32; the preStop
# sleep action needs 1.30+).
K8S_VERSION="${BASALT_K8S_VERSION:-1.32.0}"

command -v python3 >/dev/null || { echo "python3 not found" >&2; exit 1; }
command -v kubectl >/dev/null || { echo "kubectl not found: it renders the Kustomize overlays (kubectl kustomize)" >&2; exit 1; }

if ! "$VENV/bin/kubernetes-validate" --version 2>/dev/null | grep -qx "$KV_VERSION"; then
  echo "installing kubernetes-validate $KV_VERSION once into $VENV" >&2
  mkdir -p "$ROOT"
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KV_VERSION" pyyaml "tomli; python_version < '3.11'" >&2
fi
PY="$VENV/bin/python"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "== Dockerfile, compose, configuration (against README.md and crates/basalt/src)"
"$PY" - <<'PY'
import ipaddress
import json
import os
import re
import sys

import yaml

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

errors = []


def fail(msg):
    errors.append(msg)


def read(p):
    with open(p) as f:
        return f.read()


# ---- the cargo build line: README == scripts/serve.sh == Dockerfile
def cargo_lines(text, where, comments="#"):
    out = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith(comments) or not s.startswith("cargo build"):
            continue
        cmd = re.split(r"\s*(?:&&|;|\|\||\\$|\s#)", s)[0]
        out.append(" ".join(cmd.split()))
    if not out:
        fail(f"{where}: no line starting with `cargo build`")
    return out


readme = cargo_lines(read("README.md"), "README.md")
serve = cargo_lines(read("scripts/serve.sh"), "scripts/serve.sh")
docker_text = read("deploy/Dockerfile")
docker = cargo_lines(docker_text, "deploy/Dockerfile")
lines = set(readme) | set(serve) | set(docker)
if len(lines) != 1:
    fail(f"the cargo build lines differ: README {readme}, scripts/serve.sh {serve}, deploy/Dockerfile {docker}")
else:
    print(f"  build line, same in README.md, scripts/serve.sh and deploy/Dockerfile: {lines.pop()}")

# ---- the Dockerfile's runtime stage
stages = re.findall(r"(?im)^FROM\s+(\S+)", docker_text)
if len(stages) < 2 or not stages[0].startswith("rust:") or "bookworm" not in stages[0]:
    fail(f"deploy/Dockerfile: expected a rust:*bookworm builder and a runtime stage, got {stages}")
user = re.findall(r"(?m)^USER\s+(\S+)", docker_text)
if not user or user[-1].split(":")[0] in ("root", "0"):
    fail(f"deploy/Dockerfile: the runtime stage must run as a non-root USER, got {user}")
m = re.search(r"(?m)^ENTRYPOINT\s+(\[.*\])", docker_text)
entry = json.loads(m.group(1)) if m else []
port = None
if entry[1:3] != ["serve", "--http"] or not entry[3].startswith("0.0.0.0:"):
    fail(f"deploy/Dockerfile: ENTRYPOINT must be basalt serve --http 0.0.0.0:PORT, got {entry}")
else:
    port = entry[3].split(":")[1]
exposed = re.findall(r"(?m)^EXPOSE\s+(.+)$", docker_text)
if port and port not in " ".join(exposed).split():
    fail(f"deploy/Dockerfile: EXPOSE {exposed} does not include the --http port {port}")
hc = re.search(r"(?ms)^HEALTHCHECK.*?CMD\s+(\[.*?\])\s*$", docker_text)
if not hc or f"/dev/tcp/127.0.0.1/{port}" not in hc.group(1) or "GET /livez " not in hc.group(1):
    fail(f"deploy/Dockerfile: HEALTHCHECK must GET /livez on 127.0.0.1:{port}")
if "/data" not in " ".join(re.findall(r"(?m)^VOLUME\s+(.+)$", docker_text)):
    fail("deploy/Dockerfile: no VOLUME /data")

# ---- what the binary accepts (crates/basalt/src, crates/service/src/roles.rs)
src = {p: read(p) for p in ("crates/basalt/src/main.rs", "crates/basalt/src/settings.rs",
                             "crates/basalt/src/telemetry.rs", "crates/basalt/build.rs")}
code = "\n".join(src.values())
settings_rs = src["crates/basalt/src/settings.rs"]
routes = read("crates/http/src/handlers.rs")
for probe in ("/livez", "/readyz"):
    if f'"{probe}"' not in routes:
        fail(f"crates/http/src/handlers.rs has no route {probe}")
targets = set(re.findall(r'name:\s*"([a-z]+)"', read("crates/service/src/roles.rs")))


def struct_fields(name):
    m = re.search(r"struct " + name + r"\s*\{(.*?)\n\}", settings_rs, re.S)
    if not m:
        return None
    return dict(re.findall(r"^\s*(?:pub\s+)?(\w+):\s*([^,\n]+),", m.group(1), re.M))


top = struct_fields("FileSettings")


def check_toml(path):
    try:
        doc = tomllib.loads(read(path))
    except Exception as e:
        fail(f"{path}: not TOML: {e}")
        return
    for key, value in doc.items():
        if key not in top:
            fail(f"{path}: [{key}] is not a key of basalt.toml (FileSettings in settings.rs)")
            continue
        inner = re.search(r"Option<(\w+)>", top[key])
        if isinstance(value, dict) and inner and inner.group(1).startswith("File"):
            fields = struct_fields(inner.group(1)) or {}
            for k in value:
                if k not in fields:
                    fail(f"{path}: [{key}] {k} is not a key of {inner.group(1)} in settings.rs")
        for k in ("unlimited", "allow"):
            for net in (value.get(k, []) if isinstance(value, dict) else []):
                try:
                    ipaddress.ip_network(net, strict=False)
                except ValueError:
                    fail(f"{path}: [{key}] {k}: {net!r} is not a network")
    print(f"  {path}: sections {', '.join(doc)} known to settings.rs")


for p in ("deploy/compose/basalt.toml", "deploy/k8s/base/basalt.toml"):
    check_toml(p)

# BASALT_* variables the deployment sets, and the flags it passes, must exist in the binary's code.
ONLY_COMPOSE = {"BASALT_SUPERUSER_EMAIL", "BASALT_SUPERUSER_PASSWORD", "BASALT_IMAGE"}


def check_env(names, where):
    for n in sorted(names):
        if n.startswith("BASALT_") and n not in ONLY_COMPOSE and f'"{n}"' not in code:
            fail(f"{where}: {n} is not read by crates/basalt (no \"{n}\" in its source)")


def check_flags(args, where):
    for i, a in enumerate(args):
        if not isinstance(a, str) or not a.startswith("--"):
            continue
        field = a[2:].split("=")[0].replace("-", "_")
        if not re.search(r"\b" + field + r":\s", src["crates/basalt/src/main.rs"] + settings_rs):
            fail(f"{where}: flag {a} is not one of basalt's (no field {field} in main.rs/settings.rs)")
        if a == "--target" and i + 1 < len(args) and args[i + 1] not in targets:
            fail(f"{where}: --target {args[i + 1]} is not one of {sorted(targets)}")


check_env(re.findall(r"(?m)^ENV\s+(\w+)=", docker_text), "deploy/Dockerfile")
check_flags(entry, "deploy/Dockerfile ENTRYPOINT")

# ---- compose.yaml
compose_path = "deploy/compose.yaml"
with open(compose_path) as f:
    compose = yaml.safe_load(f)
services = compose.get("services") or {}
if not services:
    fail(f"{compose_path}: no services")
base = os.path.dirname(compose_path)
basalt_nodes = {}
for name, s in services.items():
    if not s.get("image"):
        fail(f"{compose_path}: service {name} has no image")
    b = s.get("build")
    if b:
        df = os.path.normpath(os.path.join(base, b.get("context", "."), b.get("dockerfile", "Dockerfile")))
        if not os.path.isfile(df):
            fail(f"{compose_path}: service {name} builds from {df}, which does not exist")
    for dep in (s.get("depends_on") or {}):
        if dep not in services:
            fail(f"{compose_path}: service {name} depends on {dep}, which is not a service")
    for v in s.get("volumes") or []:
        host = v.split(":")[0]
        if host.startswith("."):
            if not os.path.exists(os.path.join(base, host)):
                fail(f"{compose_path}: service {name} mounts {host}, which does not exist")
        elif host not in (compose.get("volumes") or {}):
            fail(f"{compose_path}: service {name} mounts volume {host}, not declared under volumes:")
    env = s.get("environment") or {}
    check_env(env if isinstance(env, dict) else [e.split("=")[0] for e in env], f"{compose_path} {name}")
    args = list(s.get("entrypoint") or []) + list(s.get("command") or [])
    if "basalt" in str(s.get("image")):
        check_flags(args, f"{compose_path} {name}")
        if isinstance(env, dict) and "BASALT_METRICS_HTTP" in env:
            basalt_nodes[name] = env["BASALT_METRICS_HTTP"].rsplit(":", 1)[1]
            if not env.get("BASALT_ADVERTISE", "").startswith(name + ":"):
                fail(f"{compose_path}: {name} must advertise its own name (BASALT_ADVERTISE={env.get('BASALT_ADVERTISE')})")
api_nodes = {n for n, s in services.items() if "api" in (s.get("command") or [])}
if len(api_nodes) < 3:
    fail(f"{compose_path}: expected at least three --target api services, got {sorted(api_nodes)}")
print(f"  {compose_path}: {len(services)} services, each with an image; basalt nodes {sorted(basalt_nodes)}")

haproxy = read("deploy/haproxy/haproxy.cfg")
servers = set(re.findall(r"(?m)^\s*server\s+\S+\s+([\w.-]+):\d+", haproxy))
if servers != api_nodes:
    fail(f"deploy/haproxy/haproxy.cfg: servers {sorted(servers)} != the api services {sorted(api_nodes)}")
if "option httpchk GET /readyz" not in haproxy:
    fail("deploy/haproxy/haproxy.cfg: the backend must check GET /readyz")

with open("deploy/compose/prometheus.yml") as f:
    prom = yaml.safe_load(f)
scraped = set()
for job in prom.get("scrape_configs", []):
    if job.get("job_name") == "basalt":
        for sc in job.get("static_configs", []):
            scraped |= set(sc.get("targets", []))
want = {f"{n}:{p}" for n, p in basalt_nodes.items()}
if scraped != want:
    fail(f"deploy/compose/prometheus.yml: job basalt scrapes {sorted(scraped)}, the nodes' metrics listeners are {sorted(want)}")

# ---- Grafana provisioning
with open("deploy/grafana/provisioning/datasources/prometheus.yaml") as f:
    ds = yaml.safe_load(f)
if not any(d.get("type") == "prometheus" and d.get("isDefault") for d in ds.get("datasources", [])):
    fail("deploy/grafana: no default Prometheus data source (the dashboard's DS_PROMETHEUS picks the default)")
with open("deploy/grafana/provisioning/dashboards/basalt.yaml") as f:
    prov = yaml.safe_load(f)
paths = {p.get("options", {}).get("path") for p in prov.get("providers", [])}
mounted = {os.path.dirname(v.split(":")[1]) for v in services.get("grafana", {}).get("volumes", [])
           if "grafana-dashboard.json" in v}
if not paths & mounted:
    fail(f"deploy/grafana: the dashboard provider reads {paths}, compose mounts the dashboard into {mounted}")
json.loads(read("deploy/observability/grafana-dashboard.json"))
print("  haproxy servers, Prometheus targets and Grafana provisioning match the compose services")

if errors:
    print("\n".join("FAIL " + e for e in errors), file=sys.stderr)
    sys.exit(1)
PY

echo "== haproxy -c deploy/haproxy/haproxy.cfg"
if command -v haproxy >/dev/null; then
  # The servers' names resolve only on the compose network: those warnings are expected here.
  out="$(haproxy -c -f deploy/haproxy/haproxy.cfg 2>&1)" || { echo "$out" >&2; exit 1; }
  if echo "$out" | grep -i 'WARNING\|ALERT' | grep -v -e 'could not resolve address' -e '^Warnings were found'; then
    echo "haproxy: unexpected warnings (above)" >&2; exit 1
  fi
  echo "  $(echo "$out" | grep -i 'valid')"
else
  echo "  SKIPPED: haproxy is not installed (apt-get install haproxy; scripts/services.sh does as root)"
fi

echo "== promtool check config deploy/compose/prometheus.yml (with alerts.yml beside it, as mounted)"
if command -v promtool >/dev/null; then
  mkdir -p "$tmp/prometheus"
  cp deploy/compose/prometheus.yml deploy/observability/alerts.yml "$tmp/prometheus/"
  promtool check config "$tmp/prometheus/prometheus.yml" | sed "s|$tmp/prometheus/|  |"
else
  echo "  SKIPPED: promtool is not installed (apt-get install prometheus; scripts/check-observability.sh does as root)"
fi

echo "== kubectl kustomize + kubernetes-validate --strict (Kubernetes $K8S_VERSION)"
overlays=()
for d in deploy/k8s/overlays/*/; do
  [ -f "$d/kustomization.yaml" ] && overlays+=("$(basename "$d")")
done
[ "${#overlays[@]}" -gt 0 ] || { echo "no overlays under deploy/k8s/overlays" >&2; exit 1; }
for o in "${overlays[@]}"; do
  kubectl kustomize "deploy/k8s/overlays/$o" > "$tmp/$o.yaml"
done
cp deploy/k8s/overlays/cluster/secret.example.yaml "$tmp/secret.example.yaml"

"$PY" - "$tmp" "${overlays[@]}" <<'PY'
import json
import re
import sys

import yaml

tmp, overlays = sys.argv[1], sys.argv[2:]
errors = []
CRD_GROUPS = ("monitoring.coreos.com/",)


def fail(msg):
    errors.append(msg)


with open("deploy/observability/alerts.yml") as f:
    alert_groups = yaml.safe_load(f)["groups"]
cluster_rs = open("crates/service/src/cluster.rs").read()
m = re.search(r"impl Default for Lifecycle.*?drain_delay:\s*Duration::from_secs\((\d+)\).*?deadline:\s*Duration::from_secs\((\d+)\)", cluster_rs, re.S)
DEFAULT_DRAIN, DEFAULT_DEADLINE = (int(m.group(1)), int(m.group(2))) if m else (None, None)
if DEFAULT_DRAIN is None:
    fail("crates/service/src/cluster.rs: cannot read Lifecycle's default drain_delay and deadline")
with open("deploy/k8s/overlays/cluster/secret.example.yaml") as f:
    example = yaml.safe_load(f)
example_keys = set(example.get("stringData", {})) | set(example.get("data", {}))
example_text = open("deploy/k8s/overlays/cluster/secret.example.yaml").read()
example_keys |= set(re.findall(r"(?m)^\s*#\s*([a-z-]+):\s", example_text))


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


for o in overlays:
    with open(f"{tmp}/{o}.yaml") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    core = [d for d in docs if not d.get("apiVersion", "").startswith(CRD_GROUPS)]
    crds = [d for d in docs if d.get("apiVersion", "").startswith(CRD_GROUPS)]
    with open(f"{tmp}/{o}.core.yaml", "w") as f:
        yaml.safe_dump_all(core, f, sort_keys=False)
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d.get("kind"), []).append(d)
    where = f"overlay {o}"

    # -- the CRDs, structurally
    for d in crds:
        name = (d.get("metadata") or {}).get("name")
        if not (d.get("apiVersion") and d.get("kind") and name and isinstance(d.get("spec"), dict)):
            fail(f"{where}: {d.get('kind')} {name}: needs apiVersion, kind, metadata.name and spec")
            continue
        if d["kind"] == "PrometheusRule":
            if d["spec"].get("groups") != alert_groups:
                fail(f"{where}: PrometheusRule {name}: spec.groups differ from deploy/observability/alerts.yml")
        elif d["kind"] == "ServiceMonitor":
            sel = d["spec"].get("selector", {}).get("matchLabels", {})
            svcs = [s for s in by_kind.get("Service", []) if matches(sel, s["metadata"].get("labels", {}))]
            if not svcs:
                fail(f"{where}: ServiceMonitor {name} selects no Service ({sel})")
            for ep in d["spec"].get("endpoints", []):
                if not any(ep.get("port") in [p.get("name") for p in s["spec"]["ports"]] for s in svcs):
                    fail(f"{where}: ServiceMonitor {name}: no selected Service has a port named {ep.get('port')}")
                jobs = [r.get("replacement") for r in ep.get("relabelings", []) if r.get("targetLabel") == "job"]
                if jobs != ["basalt"]:
                    fail(f"{where}: ServiceMonitor {name}: the alerts and dashboard expect job=\"basalt\" (relabelings)")
        else:
            fail(f"{where}: {d['kind']} {name}: no structural check for this custom resource")

    # -- the workloads
    workloads = by_kind.get("Deployment", []) + by_kind.get("StatefulSet", [])
    pods = []
    for w in workloads:
        wn = f"{where}: {w['kind']} {w['metadata']['name']}"
        spec = w["spec"]
        tpl = spec["template"]
        labels = tpl["metadata"].get("labels", {})
        if not matches(spec["selector"].get("matchLabels"), labels):
            fail(f"{wn}: its selector does not match its pod labels")
        ps = tpl["spec"]
        c = next((c for c in ps["containers"] if c["name"] == "basalt"), None)
        if not c:
            fail(f"{wn}: no container named basalt")
            continue
        env = {e["name"]: e for e in c.get("env", [])}
        target = env.get("BASALT_TARGET", {}).get("value", "all")
        pods.append((w, labels, target))
        probe = lambda p: (c.get(p) or {}).get("httpGet", {}).get("path")
        if probe("livenessProbe") != "/livez" or probe("readinessProbe") != "/readyz":
            fail(f"{wn}: liveness must GET /livez and readiness /readyz")
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        if ports.get("http") != 8090:
            fail(f"{wn}: container port http must be 8090 (the image's --http)")
        sc, psc = c.get("securityContext", {}), ps.get("securityContext", {})
        if not psc.get("runAsNonRoot") or not sc.get("readOnlyRootFilesystem") or sc.get("allowPrivilegeEscalation") is not False:
            fail(f"{wn}: must run as non-root, with a read-only root filesystem and no privilege escalation")
        pre = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        on_pg = "BASALT_DATABASE_URL" in env
        ms = lambda k, d: int(env[k]["value"]) / 1000 if k in env and "value" in env[k] else d
        drain = ms("BASALT_DRAIN_DELAY_MS", DEFAULT_DRAIN if on_pg else 0)
        deadline = ms("BASALT_SHUTDOWN_DEADLINE_MS", DEFAULT_DEADLINE)
        grace = ps.get("terminationGracePeriodSeconds", 30)
        if grace < pre + drain + deadline + 5:
            fail(f"{wn}: terminationGracePeriodSeconds {grace} < preStop {pre} + drain {drain} + deadline {deadline} + 5 s to leave")
        if "BASALT_ADVERTISE" not in env:
            fail(f"{wn}: no BASALT_ADVERTISE (realtime forwarding would go to 0.0.0.0)")
        mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
        if not {"/data", "/tmp"} <= mounts:
            fail(f"{wn}: /data and /tmp must be writable volumes (read-only root filesystem)")
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref and ref.get("key") not in example_keys:
                fail(f"{wn}: Secret key {ref.get('key')} is not documented in overlays/cluster/secret.example.yaml")
        if w["kind"] == "StatefulSet" and spec.get("replicas") != 1:
            fail(f"{wn}: a SQLite StatefulSet must have exactly one replica")
        if w["kind"] == "StatefulSet" and on_pg:
            fail(f"{wn}: the StatefulSet is the SQLite node; it must not set BASALT_DATABASE_URL")

    # -- Services, HPA, PDB
    for s in by_kind.get("Service", []):
        sel = s["spec"].get("selector", {})
        chosen = [(w, t) for w, l, t in pods if matches(sel, l)]
        if not chosen:
            fail(f"{where}: Service {s['metadata']['name']} selects no pod")
        if s["metadata"]["name"] == "basalt" and any(t == "worker" for _, t in chosen):
            fail(f"{where}: Service basalt selects worker pods, which serve no public API")
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for h in by_kind.get("HorizontalPodAutoscaler", []):
        ref = h["spec"]["scaleTargetRef"]
        if (ref["kind"], ref["name"]) not in names:
            fail(f"{where}: HPA {h['metadata']['name']} scales {ref['kind']} {ref['name']}, not in the overlay")
        target = next(d for d in docs if (d["kind"], d["metadata"]["name"]) == (ref["kind"], ref["name"]))
        if "replicas" in target["spec"]:
            fail(f"{where}: {ref['name']} sets replicas while an HPA scales it (apply would reset it)")
    for p in by_kind.get("PodDisruptionBudget", []):
        if not any(matches(p["spec"]["selector"].get("matchLabels"), l) for _, l, _ in pods):
            fail(f"{where}: PodDisruptionBudget {p['metadata']['name']} selects no pod")
    for cm in by_kind.get("ConfigMap", []):
        if cm["metadata"]["name"].startswith("basalt-config") and "basalt.toml" not in cm.get("data", {}):
            fail(f"{where}: ConfigMap {cm['metadata']['name']} holds no basalt.toml")

    api = [w for w, l, t in pods if matches({"app.kubernetes.io/name": "basalt", "app.kubernetes.io/component": "api"}, l)]
    if o == "canary":
        images = {w["spec"]["template"]["spec"]["containers"][0]["image"] for w in api}
        if len(api) != 2 or len(images) != 2:
            fail(f"{where}: expected the stable and the canary api Deployments with two images, got {[w['metadata']['name'] for w in api]} {images}")

        def without_image(w):
            spec = json.loads(json.dumps(w["spec"]["template"]["spec"]))
            for c in spec["containers"]:
                c.pop("image", None)
            return spec

        if len(api) == 2 and without_image(api[0]) != without_image(api[1]):
            fail(f"{where}: the canary's pod spec differs from the stable one's in more than the image")
    kinds = sorted(f"{k}×{len(v)}" if len(v) > 1 else k for k, v in by_kind.items())
    print(f"  {o}: {len(docs)} objects ({', '.join(kinds)}); {len(crds)} custom resources checked here")

if errors:
    print("\n".join("FAIL " + e for e in errors), file=sys.stderr)
    sys.exit(1)
PY

for f in "${overlays[@]/%/.core.yaml}" secret.example.yaml; do
  out="$("$VENV/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "$tmp/$f" 2>&1)" || { echo "$out" >&2; exit 1; }
  # A WARN is a kind without a schema: a typo, or an API this Kubernetes does not have.
  if [ -n "$out" ]; then echo "$out" >&2; exit 1; fi
  echo "  ${f%.core.yaml}: kubernetes-validate --strict passed ($(grep -c '^kind:' "$tmp/$f") objects)"
done
echo "  SKIPPED by kubernetes-validate (no schemas; checked structurally above): ServiceMonitor, PrometheusRule"

echo "deploy OK"
