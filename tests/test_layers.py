"""The import graph of dapt/ reads top-down: no cycle between modules, no import against the
declared layer order. Every import counts, at module level and inside functions alike."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "dapt"

# lowest first; a module may import from its own layer and from the layers before it
LAYERS = ["utils", "config", "models", "data", "methods", "decouple", "engine", "trainers", "launch", "experiments",
          "api"]
# modules of the top layer (the public API and the command lines)
API = {"dapt", "dapt.cli", "dapt.__main__"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> str:
    if module in API or module.startswith("dapt.tools"):
        return "api"
    sub = module.split(".")[1]
    if sub not in LAYERS:
        raise AssertionError(f"{module}: dapt.{sub} is in no layer; add it to LAYERS in {Path(__file__).name}")
    return sub


def all_modules():
    return {module_name(p): p for p in PKG.rglob("*.py")}


def resolve(name: str, modules) -> str:
    """The longest module prefix of a dotted name (``dapt.config.CN`` -> ``dapt.config``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def imports_of(module: str, path: Path, modules):
    """Every dapt module ``module`` imports, anywhere in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [f"{prefix}.{a.name}" for a in node.names] + [prefix]
        for n in names:
            if n == "dapt" or n.startswith("dapt."):
                target = resolve(n, modules)
                if target and target != module:
                    out.add(target)
    # "from dapt.x import y": y is a module when it is one, else the edge goes to dapt.x
    return {t for t in out if not any(o != t and o.startswith(t + ".") for o in out) or t in modules}


def graph():
    modules = all_modules()
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def test_every_module_sits_in_a_layer():
    for m in all_modules():
        layer_of(m)


def test_no_import_against_the_layer_order():
    bad = []
    for m, targets in graph().items():
        for t in targets:
            if t == "dapt" and m != "dapt":
                bad.append(f"{m} imports the top-level package dapt (the public API); import the defining module")
                continue
            if LAYERS.index(layer_of(t)) > LAYERS.index(layer_of(m)):
                bad.append(f"{m} ({layer_of(m)}) imports {t} ({layer_of(t)})")
    assert not bad, "imports against the layer order " + " < ".join(LAYERS) + ":\n" + "\n".join(sorted(bad))


def test_no_import_cycle():
    g = graph()
    # a package imports its own submodules when its __init__ re-exports them; that is not a cycle
    # with a submodule importing a sibling, so edges from a package into itself are dropped
    g = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in g.items()}
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(g.get(m, ())):
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_checker_sees_imports_inside_functions(tmp_path):
    src = "def f():\n    from dapt.engine.trainer import TrainerBase\n    import dapt.trainers.base\n"
    p = tmp_path / "x.py"
    p.write_text(src)
    modules = {"dapt.engine.trainer": None, "dapt.trainers.base": None, "dapt.models.x": None}
    assert imports_of("dapt.models.x", p, modules) == {"dapt.engine.trainer", "dapt.trainers.base"}
