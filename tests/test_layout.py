"""The package's import graph has no cycle: each module can be read, and changed, knowing only
the modules below it. Every import counts, those under TYPE_CHECKING and inside functions too:
a cycle hidden there is still two modules that cannot be understood apart."""

import ast
from pathlib import Path

import mailbot

ROOT = Path(mailbot.__file__).resolve().parent


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the mailbot modules it imports (`from pkg import sub` names the submodule)."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in files)
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolved against this module's package
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    target = f"{base}.{node.module}" if node.module else base
                else:
                    target = node.module or ""
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    edges.add(sub if sub in files else target)
        graph[name] = {e for e in edges if e in files and e != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search, colouring the nodes)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_graph_is_read():
    graph = import_graph()
    assert "mailbot.pipeline" in graph and "mailbot.answers.plan" in graph
    assert "mailbot.mail.parse" in graph["mailbot.pipeline"]
    assert "mailbot.forms.checker" in graph["mailbot.forms"]  # `from mailbot.forms.checker import ...`
    assert "mailbot.mail.robots" in graph["mailbot.mail.kinds"]  # `from mailbot.mail import robots`


def test_the_finder_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) is None


def test_a_cycle_under_type_checking_counts(tmp_path):
    pkg = tmp_path / "mailbot"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "flow.py").write_text("from mailbot.sub.plan import decide\n")
    (pkg / "sub" / "plan.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mailbot.flow import Thing\n")
    assert find_cycle(import_graph(pkg)) == ["mailbot.flow", "mailbot.sub.plan", "mailbot.flow"]


def test_no_import_cycle_in_mailbot():
    assert find_cycle(import_graph()) is None
