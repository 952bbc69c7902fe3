#!/usr/bin/env python3
"""Fails when the top-level modules of a crate import each other in a cycle.

Usage: scripts/module-cycles.py crates/service/src

A module's imports are the `crate::<module>` paths in its files (brace groups included, test modules
excluded); `crate::AppCtx`/`AppState` count as `state`, `ServiceError`/`ServiceResult` as `error`, `Req` as
`request` (the crate root's re-exports). Prints the cycles (strongly connected components) and exits 1.
"""
import glob
import os
import re
import sys

ALIASES = {"AppCtx": "state", "AppState": "state", "ServiceError": "error",
           "ServiceResult": "error", "Req": "request"}


def graph(root):
    mods = {}
    for f in glob.glob(os.path.join(root, "**", "*.rs"), recursive=True):
        rel = os.path.relpath(f, root)
        top = rel.split(os.sep)[0].removesuffix(".rs")
        if top in ("lib", "main"):
            continue
        text = open(f, encoding="utf-8").read().split("#[cfg(test)]")[0]
        deps = set()
        for m in re.finditer(r"crate::\{([^}]*)\}", text):
            deps.update(p.strip().split("::")[0] for p in m.group(1).split(",") if p.strip())
        deps.update(m.group(1) for m in re.finditer(r"crate::([A-Za-z_]+)", text))
        deps = {ALIASES.get(d, d) for d in deps}
        mods.setdefault(top, set()).update(d for d in deps if d != top)
    return {m: {d for d in ds if d in mods} for m, ds in mods.items()}


def cycles(g):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    root = sys.argv[1]
    found = cycles(graph(root))
    for c in found:
        print(f"import cycle among {root} modules: {' <-> '.join(c)}", file=sys.stderr)
    sys.exit(1 if found else 0)
