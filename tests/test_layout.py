"""The shape of the house, checked: commands side by side, short import chains, the report
free of TensorFlow. Read from the source with ``ast``, imports inside functions included
(they are dependencies too, only later ones)."""

import ast
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "resnet_bench"
MAX_CHAIN = 8  # modules in the longest import chain, both ends counted


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in PACKAGE.rglob("*.py")}


def _targets(module: str, node) -> list[str]:
    """The package's modules an import statement of ``module`` names."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in MODULES]
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    if node.level:
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = package + ("." + node.module if node.module else "")
    else:
        base = node.module or ""
    out = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        out.append(sub if sub in MODULES else base)
    return [t for t in out if t in MODULES]


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for module, path in MODULES.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                deps.update(_targets(module, node))
        graph[module] = deps - {module}
    return graph


GRAPH = import_graph()


@cache
def longest_chain(module: str) -> tuple[str, ...]:
    """The longest import chain from ``module`` (the graph has no cycles: a test below)."""
    chains = [longest_chain(d) for d in GRAPH[module]]
    return (module, *max(chains, key=len, default=()))


def test_the_import_graph_has_no_cycles():
    state: dict[str, str] = {}

    def visit(m, path):
        if state.get(m) == "open":
            raise AssertionError("import cycle: " + " -> ".join([*path, m]))
        if state.get(m) != "done":
            state[m] = "open"
            for d in GRAPH[m]:
                visit(d, [*path, m])
            state[m] = "done"

    for m in GRAPH:
        visit(m, [])


def test_no_import_chain_is_longer_than_eight_modules():
    chain = max((longest_chain(m) for m in GRAPH), key=len)
    assert len(chain) <= MAX_CHAIN, " -> ".join(chain)


def test_commands_stand_side_by_side_over_the_library():
    from resnet_bench.cli import COMMANDS

    commands = {m for m in MODULES if m.startswith("resnet_bench.commands.")}
    assert commands == {c.__name__ for c in COMMANDS}  # every command module is one the CLI dispatches to
    for command in commands:
        assert not GRAPH[command] & commands, f"{command} imports another command"
    library = {m for m in MODULES if not m.startswith("resnet_bench.commands") and m != "resnet_bench.cli"}
    for module in library:
        assert not GRAPH[module] & (commands | {"resnet_bench.cli"}), f"{module} imports a command"


def _reaches(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += GRAPH[m]
    return seen


def test_the_report_and_the_lease_stand_on_no_training_code():
    training = {"resnet_bench.train", "resnet_bench.models", "resnet_bench.data.pipeline", "resnet_bench.runner"}
    for module in ("resnet_bench.report", "resnet_bench.report.render", "resnet_bench.lease", "resnet_bench.scheduler"):
        assert not _reaches(module) & training, module


def _functions():
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield module, node


MAX_FUNCTION_LINES = 60  # from def to its last line, docstring included


def test_no_function_is_longer_than_sixty_lines():
    long = [f"{m}.{f.name}: {f.end_lineno - f.lineno + 1}" for m, f in _functions()
            if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES]  # fmt: skip
    assert not long, long


MAX_MODULE_LINES = 400


def test_no_module_is_longer_than_four_hundred_lines():
    long = {m: n for m, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, long


SWEEP_WING = ("resnet_bench.driver", "resnet_bench.scheduler", "resnet_bench.runner", "resnet_bench.pools")


def test_the_sweep_wing_takes_at_most_five_positional_parameters():
    """Beyond five, arguments are named (keyword-only) or travel in the sweep's context."""
    wide = []
    for module, f in _functions():
        if module.startswith(SWEEP_WING):
            positional = [a.arg for a in f.args.posonlyargs + f.args.args if a.arg not in ("self", "cls")]
            if len(positional) > 5:
                wide.append(f"{module}.{f.name}({', '.join(positional)})")
    assert not wide, wide


def test_signal_handlers_are_set_in_one_module_and_the_pools_apart_from_the_loop():
    setters = set()
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "signal.signal":
                setters.add(module)
    assert setters == {"resnet_bench.signals"}
    pools = {m for m in MODULES if m.startswith("resnet_bench.pools.")}
    assert pools and pools <= GRAPH["resnet_bench.pools"]  # every pool module is one make_pool builds
    assert not _reaches("resnet_bench.scheduler") & (pools | {"resnet_bench.pools"})
