"""The floor plan, checked on the code: imports run only downward, no circles, small files,
no reaching into another module's private names (README, "Architecture").

Floors, top to bottom; a module may import modules of its own floor or below:
  0  main                          the entry point
  1  jobs                          one thin `run` per config.job (+ the dispatch)
  2  experiments, bench            sweeps and benchmarks (call jobs / libraries)
  3  palm, atari, gan              the trainers
  4  evaluation                    evaluation libraries
  5  agents, rewards, representation, envs, models, data   building blocks
  6  runtime                       job-agnostic host mechanics
"""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "palm_jax"
FLOORS = {"main": 0, "jobs": 1, "experiments": 2, "bench": 2, "palm": 3, "atari": 3, "gan": 3,
          "evaluation": 4, "agents": 5, "rewards": 5, "representation": 5, "envs": 5,
          "models": 5, "data": 5, "runtime": 6}
MAX_LINES = 450


def _modules():
  """{dotted name: path} of every module of the package (its __init__ marker excluded)."""
  out = {}
  for path in sorted(ROOT.rglob("*.py")):
    rel = path.relative_to(ROOT.parent).with_suffix("")
    name = ".".join(rel.parts)
    if name == "palm_jax.__init__":
      continue
    out[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
  return out


def _floor(module: str) -> int:
  return FLOORS[module.split(".")[1]]


def _imports(path: pathlib.Path, modules) -> dict:
  """{imported palm_jax module: line} of one file (function-level imports included);
  `from pkg import name` counts as `pkg.name` when that is a module, else as `pkg`."""
  out = {}
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
               else node.module for a in node.names]
    else:
      continue
    for name in names:
      if name.startswith("palm_jax.") and name in modules:
        out.setdefault(name, node.lineno)
  return out


def test_top_level_holds_only_the_entry_point_and_package_markers():
  top = sorted(p.name for p in ROOT.glob("*.py"))
  assert top == ["__init__.py", "main.py"]
  assert all(p.name in FLOORS for p in ROOT.iterdir() if p.is_dir() and
             p.name != "__pycache__"), "a package without a floor: add it to FLOORS"


def test_imports_run_downward_and_never_in_a_circle():
  modules = _modules()
  graph, upward = {}, []
  for name, path in modules.items():
    graph[name] = _imports(path, modules)
    for target, line in graph[name].items():
      if _floor(target) < _floor(name):
        upward.append(f"{path.relative_to(ROOT.parent)}:{line} imports {target}")
  assert not upward, "imports from a floor above:\n" + "\n".join(upward)
  # Circles: Tarjan's strongly connected components of the module graph.
  index, low, stack, on, circles, counter = {}, {}, [], set(), [], [0]

  def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in graph.get(v, {}):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      part = []
      while True:
        w = stack.pop()
        on.discard(w)
        part.append(w)
        if w == v:
          break
      if len(part) > 1:
        circles.append(sorted(part))

  for v in graph:
    if v not in index:
      visit(v)
  assert not circles, f"modules importing each other in a circle: {circles}"


def test_no_module_is_over_the_size_limit():
  big = [f"{p.relative_to(ROOT.parent)} ({n} lines)" for p in ROOT.rglob("*.py")
         if (n := len(p.read_text().splitlines())) > MAX_LINES]
  assert not big, f"modules over {MAX_LINES} lines (split by idea): {big}"


def test_no_module_calls_another_modules_private_names():
  modules = _modules()
  found = []
  for name, path in modules.items():
    tree = ast.parse(path.read_text())
    aliases = {}  # local name -> palm_jax module it binds
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        for a in node.names:
          full = f"{node.module}.{a.name}"
          if full in modules:
            aliases[a.asname or a.name] = full
          elif node.module.startswith("palm_jax") and a.name.startswith("_"):
            found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} imports "
                         f"{node.module}.{a.name}")
      elif isinstance(node, ast.Import):
        for a in node.names:
          if a.asname and a.name in modules:
            aliases[a.asname] = a.name
    for node in ast.walk(tree):
      if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
          and not node.attr.startswith("__") and isinstance(node.value, ast.Name)
          and aliases.get(node.value.id, name) != name):
        found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} uses "
                     f"{aliases[node.value.id]}.{node.attr}")
  assert not found, "calls into other modules' private names:\n" + "\n".join(found)


def test_moved_modules_keep_their_old_import_path_with_a_warning():
  import importlib
  import sys
  import warnings

  import palm_jax
  from palm_jax.runtime import checkpoint
  sys.modules.pop("palm_jax.checkpoint", None)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    old = importlib.import_module("palm_jax.checkpoint")
  assert old is checkpoint and old.restore_encoder is checkpoint.restore_encoder
  assert any(issubclass(w.category, DeprecationWarning) and "palm_jax.runtime.checkpoint"
             in str(w.message) for w in caught)
  for old_name, new_name in palm_jax.MOVED.items():
    assert new_name in _modules(), f"{old_name} aliases {new_name}, which does not exist"
  # `python -m palm_jax.atari100k_grid` (an old path) runs the new module's code.
  spec = importlib.util.find_spec("palm_jax.atari100k_grid")
  assert "define_flags" in spec.loader.get_code("palm_jax.atari100k_grid").co_names
