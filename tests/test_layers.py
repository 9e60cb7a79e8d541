"""Imports point down the layers: tools < agent < benchmarks < training, service < command < scripts.

Every module in the layer folders is parsed with ``ast``, and every import of ``sportlens.*`` in it is an arrow from
its layer to the imported module's, whether at the top of the module or inside a function: a function-local import
hides an arrow, it does not remove it. An arrow that points up a layer breaks the rule, and so does one between
training and service, which share a floor and never import each other.

Training sits above benchmarks: it distils from the benchmarks' oracles, rewards with their judge and scoring, and
evaluates what it trained with their runner; benchmarks never import training. The folder ``command/`` (cli, demo,
trace, vllm_env, vllm_server; installed as ``sportlens`` itself, so no folder of the repository's root shadows the
installed package) is the command. Above it are the scripts under ``benchmarks/perf/`` and ``benchmarks/gpu/``:
programs run by path, not modules of the installed package, which measure every layer, the service and the command
included. ``python tests/test_layers.py`` prints the arrows.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = "tools < agent < benchmarks < training, service < command < scripts"
FLOORS = {"tools": 0, "agent": 1, "benchmarks": 2, "training": 3, "service": 3, "command": 4, "scripts": 5}
SCRIPT_FOLDERS = ("benchmarks/perf/", "benchmarks/gpu/")  # run by path; not installed
LAYER_PACKAGES = ("tools", "agent", "benchmarks", "training", "service")  # installed as sportlens.<layer>

@dataclass(frozen=True)
class Arrow:
    """One import of a sportlens module: where it is written, what it imports, and whether a function hides it."""

    path: str
    line: int
    module: str
    in_function: bool

    @property
    def source(self) -> str:
        return "scripts" if self.path.startswith(SCRIPT_FOLDERS) else self.path.split("/")[0]

    @property
    def target(self) -> str:
        parts = self.module.split(".")
        return parts[1] if len(parts) > 1 and parts[1] in LAYER_PACKAGES else "command"

    def breaks_the_layers(self) -> bool:
        return self.source != self.target and FLOORS[self.target] >= FLOORS[self.source]


def module_name(path: Path) -> list[str]:
    """The installed name of a file as parts: tools/video.py is sportlens.tools.video, command/cli.py sportlens.cli."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ["sportlens", *(parts[1:] if parts[0] == "command" else parts)]


def imported_modules(node: ast.Import | ast.ImportFrom, importer: list[str], is_package: bool) -> list[str]:
    """The sportlens modules an import statement names, relative imports resolved against the importing module."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        package = importer if is_package else importer[:-1]
        base = package[: len(package) - node.level + 1]
        module = ".".join([*base, *(node.module or "").split(".")]).rstrip(".")
    else:
        module = node.module or ""
    if module == "sportlens":  # `from sportlens import cli`: the names are the modules
        return [f"sportlens.{alias.name}" for alias in node.names]
    return [module]


class _Imports(ast.NodeVisitor):
    def __init__(self, path: Path) -> None:
        self.path, self.arrows, self._depth = path, [], 0
        self._name = module_name(path)
        if path.name == "__init__.py":
            self._name = self._name[:-1]

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def _import(self, node: ast.Import | ast.ImportFrom) -> None:
        for module in imported_modules(node, self._name, self.path.name == "__init__.py"):
            if module == "sportlens" or module.startswith("sportlens."):
                relative = self.path.relative_to(ROOT).as_posix()
                self.arrows.append(Arrow(relative, node.lineno, module, self._depth > 0))

    visit_Import = visit_ImportFrom = _import


def layer_modules() -> list[Path]:
    return sorted(path for folder in FLOORS if folder != "scripts" for path in (ROOT / folder).rglob("*.py"))


def arrows() -> list[Arrow]:
    """Every import of a sportlens module in every module of the layer folders."""
    found = []
    for path in layer_modules():
        visitor = _Imports(path)
        visitor.visit(ast.parse(path.read_text(), filename=str(path)))
        found += visitor.arrows
    return found


def test_module_names_and_relative_imports_resolve_to_their_layer():
    init = ROOT / "agent" / "backends" / "__init__.py"
    assert module_name(ROOT / "tools" / "video.py") == ["sportlens", "tools", "video"]
    assert module_name(ROOT / "command" / "cli.py") == ["sportlens", "cli"]
    up_two = ast.parse("from ..tools import frames").body[0]
    assert imported_modules(up_two, ["sportlens", "agent", "loop"], False) == ["sportlens.tools"]
    assert imported_modules(ast.parse("from . import base").body[0], module_name(init)[:-1], True) == [
        "sportlens.agent.backends"
    ]
    assert imported_modules(ast.parse("from sportlens import cli, trace").body[0], ["sportlens", "x"], False) == [
        "sportlens.cli", "sportlens.trace"
    ]
    assert Arrow("service/jobs.py", 1, "sportlens.cli", True).breaks_the_layers()
    assert Arrow("benchmarks/runner.py", 1, "sportlens.training.grpo", True).breaks_the_layers()
    assert Arrow("service/worker.py", 1, "sportlens.training.sft", False).breaks_the_layers()
    assert not Arrow("training/grpo.py", 1, "sportlens.benchmarks.judge", False).breaks_the_layers()
    assert not Arrow("benchmarks/perf/service_api.py", 1, "sportlens.service.app", False).breaks_the_layers()
    assert Arrow("benchmarks/scoring.py", 1, "sportlens.service.app", False).breaks_the_layers()
    assert not Arrow("command/cli.py", 1, "sportlens.training.commands", True).breaks_the_layers()
    assert not Arrow("tools/video.py", 1, "sportlens.tools.frames", False).breaks_the_layers()


def test_imports_point_down_the_layers():
    found = arrows()
    between = [arrow for arrow in found if arrow.source != arrow.target]
    breaking = [arrow for arrow in between if arrow.breaks_the_layers()]
    print(f"\nlayers: {len(layer_modules())} modules, {len(between)} imports between layers "
          f"({sum(a.in_function for a in between)} inside functions), {len(breaking)} point up")
    assert not breaking, f"imports that point up the layers ({ORDER}):\n" + "\n".join(
        f"  {a.path}:{a.line} imports {a.module} ({a.source} -> {a.target})" for a in breaking
    )


def test_the_layers_import_from_the_repository_root_without_the_installed_package(tmp_path):
    """Python puts the working folder first on its path, so a root folder named ``sportlens`` would shadow the
    package wherever no editable install maps it (a plain install, the GPU run's linked source tree): linked like
    ``benchmarks/gpu/run_full.sh`` links them, run from the root with site's path hooks off, every layer imports."""
    package = tmp_path / "sportlens"
    package.mkdir()
    for module in (ROOT / "command").glob("*.py"):
        (package / module.name).symlink_to(module)
    for layer in LAYER_PACKAGES:
        (package / layer).symlink_to(ROOT / layer)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), sysconfig.get_paths()["purelib"]])}
    imports = "import sportlens.cli, sportlens.tools.frames, sportlens.agent.loop"
    run = subprocess.run([sys.executable, "-S", "-c", imports], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


if __name__ == "__main__":
    for arrow in arrows():
        if arrow.source != arrow.target:
            mark = "UP" if arrow.breaks_the_layers() else "  "
            print(f"{mark} {arrow.source:>10} -> {arrow.target:<10} {arrow.path}:{arrow.line} {arrow.module}"
                  + (" (in a function)" if arrow.in_function else ""))
