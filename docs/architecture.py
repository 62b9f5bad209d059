"""Draws docs/architecture.md's picture from the code: which stage imports which, read from every import statement
(lazy ones inside functions included) of clinlinker/ and backend/.

    python docs/architecture.py          # rewrite the picture in docs/architecture.md
    python docs/architecture.py --check  # exit 1 if the picture no longer matches the code

tests/test_layout.py checks the same rules (no circle, imports point down the stages and down backend/'s packages,
clinlinker/ never imports backend/) and that the committed picture is the one the code draws.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
BEGIN, END = "<!-- picture: drawn by docs/architecture.py -->", "<!-- end of picture -->"

# The library's stages in the order data flows; an import may only point to the same stage or an earlier one.
STAGES = ["clinlinker (shared)", "clinlinker.kb", "clinlinker.encode", "clinlinker.search", "clinlinker.rerank",
          "clinlinker.linking", "clinlinker.train", "clinlinker.evaluate", "clinlinker.cli"]
# backend/'s packages by role, from the bottom up; all of backend/ sits above the library, and a backend package may
# import only the packages below it (each a node of the picture).
BACKEND = ["backend.labelstudio", "backend.records", "backend.serving", "backend.jobs", "backend.commands"]


def modules() -> dict[str, Path]:
    found = {}
    for top in ("clinlinker", "backend"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """Our modules that `path` imports anywhere in it (a name imported from a package counts as that package
    unless it is a submodule)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                     for alias in node.names]
        else:
            continue
        out.update(name for name in names if name in known)
    return out


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(path, set(found)) - {name} for name, path in found.items()}


def stage(module: str) -> str:
    if module.startswith("backend"):
        return next((layer for layer in BACKEND if module == layer or module.startswith(layer + ".")), "backend")
    parts = module.split(".")
    candidate = ".".join(parts[:2])
    return candidate if candidate in STAGES else "clinlinker (shared)"


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def upward(edges: dict[str, set[str]]) -> list[str]:
    """Imports that point up the library's stages or up backend/'s packages, from clinlinker/ into backend/, and
    backend/ modules outside its packages."""
    bad = []
    for a, targets in edges.items():
        for b in targets:
            if a.startswith("clinlinker") and b.startswith("backend"):
                bad.append(f"{a} -> {b} (the library imports the adapter)")
            elif a.startswith("clinlinker") and STAGES.index(stage(b)) > STAGES.index(stage(a)):
                bad.append(f"{a} -> {b} ({stage(a)} is below {stage(b)})")
            elif a.startswith("backend") and b.startswith("backend") and "backend" not in (stage(a), stage(b)) \
                    and BACKEND.index(stage(b)) > BACKEND.index(stage(a)):
                bad.append(f"{a} -> {b} ({stage(a)} is below {stage(b)})")
    bad += [f"{m}: a backend/ module outside its packages ({', '.join(BACKEND)})" for m in edges
            if m.startswith("backend.") and stage(m) == "backend"]
    return sorted(bad)


def picture(edges: dict[str, set[str]]) -> str:
    nodes = STAGES + BACKEND
    ids = {name: f"n{i}" for i, name in enumerate(nodes)}
    pairs = defaultdict(int)
    for a, targets in edges.items():
        for b in targets:
            if stage(a) != stage(b):
                pairs[stage(a), stage(b)] += 1
    # an arrow into a library stage is left out where the importer also imports a higher stage that leads there:
    # the picture shows the layering, not every implied arrow (arrows between backend/'s packages are all drawn)
    library = [(x, y) for (x, y) in pairs if x in STAGES and y in STAGES]

    def below(c, target):
        todo, seen = [c], set()
        while todo:
            n = todo.pop()
            if n == target:
                return True
            if n not in seen:
                seen.add(n)
                todo.extend(y for (x, y) in library if x == n)
        return False

    pairs = {(x, y): n for (x, y), n in pairs.items()
             if y not in STAGES or not any(c != y and c in STAGES and below(c, y) for (x2, c) in pairs if x2 == x)}
    lines = ["```mermaid", "flowchart TD"]
    for name in nodes:
        members = sorted(m for m in edges if stage(m) == name)
        label = name.replace(".", "/")
        lines.append(f'  {ids[name]}["{label}<br/><small>{len(members)} modules</small>"]')
    for (a, b), count in sorted(pairs.items(), key=lambda p: (nodes.index(p[0][0]), nodes.index(p[0][1]))):
        lines.append(f"  {ids[a]} -->|{count} imports| {ids[b]}")
    lines.append("```")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    edges = graph()
    text = DOC.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    drawn = f"{head}{BEGIN}\n{picture(edges)}\n{END}{rest.split(END, 1)[1]}"
    if "--check" in argv:
        problems = [" <-> ".join(c) for c in cycles(edges)] + upward(edges)
        if drawn != text:
            problems.append("docs/architecture.md's picture is not what the code draws: run python docs/architecture.py")
        print("\n".join(problems) or "ok")
        return 1 if problems else 0
    DOC.write_text(drawn, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
