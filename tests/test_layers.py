"""Imports run one way: every file of vita-mini knows which room it is in and what it may touch.

The rooms, lowest first (README "The files"). A module may import from its own room or from a
room below it, never from one above; and no chain of imports may lead back to where it started.

    0  bottom            vita_mini.errors, .config(_checks), .vocab   the error type, presets, the token space
    1  audio, model      vita_mini.audio, vita_mini.model    building blocks that need nothing else
    2  data              vita_mini.data                      corpora and samples (may use audio's WAV io)
    3  runs              vita_mini.checkpoint, .runs, .codes run folders, loading finished stages
    4  infer             vita_mini.infer                     schedules, the engine, the benchmark
    5  eval              vita_mini.eval                      metrics, task evaluations, the suite
    6  train             vita_mini.train                     the loop, the stage skeleton, the stages
    7  command lines     train.py, generate.py, vita_mini.cli, python -m vita_mini.eval,
                         python -m vita_mini.train.step_profile, python -m vita_mini.infer.step_profile,
                         python -m vita_mini.infer.depth, python -m vita_mini.eval.speed_quality,
                         python -m vita_mini.eval.gallery

Imports inside functions count too: they run one way or they do not.
"""

from __future__ import annotations

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ROOMS = [
    ("bottom", ["vita_mini", "vita_mini.errors", "vita_mini.config", "vita_mini.config_checks", "vita_mini.vocab"]),
    ("audio, model", ["vita_mini.audio", "vita_mini.model"]),
    ("data", ["vita_mini.data"]),
    ("runs", ["vita_mini.checkpoint", "vita_mini.runs", "vita_mini.shards", "vita_mini.codes"]),
    ("infer", ["vita_mini.infer"]),
    ("eval", ["vita_mini.eval"]),
    ("train", ["vita_mini.train"]),
    ("command lines", ["vita_mini.cli", "vita_mini.eval.__main__", "vita_mini.train.step_profile",
                       "vita_mini.infer.step_profile", "vita_mini.infer.depth", "vita_mini.eval.speed_quality",
                       "vita_mini.eval.gallery", "train", "generate"]),
]


def room_of(module: str) -> int:
    """Index in ROOMS of the longest prefix that names ``module`` (a package or the module)."""
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(ROOMS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best is None:
        raise AssertionError(f"module {module} is in no room of tests/test_layers.py; add it")
    return best


def project_files() -> dict[str, str]:
    """{module name: file path} of the package and the two command lines."""
    files = {"train": os.path.join(ROOT, "train.py"), "generate": os.path.join(ROOT, "generate.py")}
    for folder, _, names in os.walk(os.path.join(ROOT, "vita_mini")):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                files[".".join(parts)] = path
    return files


def imports_of(path: str, known: set[str]) -> set[str]:
    """The project modules that the file at ``path`` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from a.b import c": c may be a module (a.b.c) or a name in a.b
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = project_files()
    return {module: imports_of(path, set(files)) - {module} for module, path in files.items()}


def backwards_imports(graph: dict[str, set[str]]) -> list[str]:
    """'a (room) imports b (higher room)' for every import that runs upwards."""
    problems = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if room_of(target) > room_of(module):
                problems.append(f"{module} ({ROOMS[room_of(module)][0]}) imports {target} "
                                f"({ROOMS[room_of(target)][0]})")
    return problems


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first search, as the list of modules along it."""
    cycles, state, path = [], {}, []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return cycles


def test_every_project_module_has_a_room():
    for module in import_graph():
        room_of(module)


def test_no_import_runs_upwards():
    assert backwards_imports(import_graph()) == []


def test_no_import_cycles():
    assert import_cycles(import_graph()) == []


def test_the_checks_catch_a_backwards_import_and_a_cycle():
    """The two checks above can fail: a building block importing a stage is caught, and so is
    a circle between two files of one room."""
    graph = import_graph()
    graph["vita_mini.model.llm"] = graph["vita_mini.model.llm"] | {"vita_mini.train.loop"}
    assert backwards_imports(graph) == ["vita_mini.model.llm (audio, model) imports "
                                        "vita_mini.train.loop (train)"]
    graph = import_graph()
    graph["vita_mini.vocab"] = graph["vita_mini.vocab"] | {"vita_mini.config"}
    graph["vita_mini.config"] = graph["vita_mini.config"] | {"vita_mini.vocab"}
    assert ["vita_mini.config", "vita_mini.vocab", "vita_mini.config"] in import_cycles(graph)


def test_the_graph_sees_imports_inside_functions():
    """vita_mini/data/corpus.py imports the espeak backend only when asked for it."""
    assert "vita_mini.data.espeak" in import_graph()["vita_mini.data.corpus"]
