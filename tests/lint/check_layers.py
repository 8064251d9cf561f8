#!/usr/bin/env python3
"""Checks that core/ includes point only downward.

core/ has one folder per layer, lowest first (the order below, which
docs/architecture.md "Source layout" explains).  A file may include headers
of its own layer and of the layers below it, and the public ABI
(authscan/*.h); an include of a higher layer is reported as
"FILE:LINE: LAYER includes HIGHER/x.h".  Run by ctest as test_layers.
"""
import os
import re
import sys

LAYERS = ["util", "mail", "services", "scan", "net", "daemon", "bin"]
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def check(core):
    problems, checked = [], 0
    for rank, layer in enumerate(LAYERS):
        folder = os.path.join(core, layer)
        if not os.path.isdir(folder):
            problems.append(f"{folder}: layer folder missing")
            continue
        for name in sorted(os.listdir(folder)):
            if not name.endswith((".c", ".h")):
                continue
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    checked += 1
                    target = m.group(1)
                    top = target.split("/")[0]
                    if top == "authscan":
                        continue
                    if top not in LAYERS:
                        problems.append(f"{path}:{lineno}: include \"{target}\" names no layer "
                                        f"(want one of {', '.join(LAYERS)}/ or authscan/)")
                        continue
                    if LAYERS.index(top) > rank:
                        problems.append(f"{path}:{lineno}: {layer} includes {target}, a higher layer")
    stray = [n for n in os.listdir(core) if n.endswith((".c", ".h"))]
    for n in stray:
        problems.append(f"{os.path.join(core, n)}: source file outside a layer folder")
    return problems, checked


def main():
    core = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "core")
    problems, checked = check(core)
    for p in problems:
        print(p)
    print(f"check_layers: {checked} includes checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
