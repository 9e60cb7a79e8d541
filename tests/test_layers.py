"""Imports point down the layers: tools < agent < benchmarks, training < service < sportlens (the command).

Every module in the layer folders is parsed with ``ast``, and every import of ``sportlens.*`` in it is an arrow from
its layer to the imported module's, whether at the top of the module or inside a function: a function-local import
hides an arrow, it does not remove it. An arrow that points up a layer breaks the rule, and so does one between
benchmarks and training, which share a floor until issue 17 decides which of the two sits above the other.
The top folder ``sportlens/`` (cli, models, demo, trace, vllm_env, vllm_server, ports) is the highest layer.

Today's breaks are listed in ``KNOWN_VIOLATIONS``, each with its issue-17 reason. The test fails on any other and on
an entry that no longer happens, so the list only shrinks. ``python tests/test_layers.py`` prints the arrows.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = "tools < agent < benchmarks, training < service < sportlens"
FLOORS = {"tools": 0, "agent": 1, "benchmarks": 2, "training": 2, "service": 3, "sportlens": 4}
LAYER_PACKAGES = ("tools", "agent", "benchmarks", "training", "service")  # installed as sportlens.<layer>

_DEMO_MODEL = "issue 17 Layers: building the demo model moves out of training, beside agent/backends"
_OPEN_BACKEND = "issue 17 Layers: model opening (sportlens/models.py) moves to agent/backends, under service"
_CIRCLE = "issue 17 Layers: the circle cli -> training/commands -> sportlens.cli; UsageError moves to a leaf module"
_SIBLINGS = "issue 17 Layers: training <-> benchmarks runs both ways; one direction is to be decided and kept"
_PORTS = "issue 17 Layers: free_port is a leaf helper in the top folder; it moves down to where servers start"
_PERF_SERVICE = "issue 17 Layers: benchmarks may not import service; the service's perf scripts move above it"
_VLLM_SERVER = "issue 17 Rooms: sportlens/vllm_server.py splits; starting a server moves below the command"

# (importing file, imported module) -> why it is there today and what issue 17 does about it.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {
    ("service/settings.py", "sportlens.models"): _OPEN_BACKEND,
    ("service/worker.py", "sportlens.models"): _OPEN_BACKEND,
    ("benchmarks/commands.py", "sportlens.models"): _OPEN_BACKEND,
    ("service/embedded_redis.py", "sportlens.ports"): _PORTS,
    ("benchmarks/perf/service_api.py", "sportlens.ports"): _PORTS,
    ("benchmarks/perf/service_limits.py", "sportlens.ports"): _PORTS,
    ("benchmarks/perf/vllm_agent.py", "sportlens.ports"): _PORTS,
    ("benchmarks/perf/service_api.py", "sportlens.service.app"): _PERF_SERVICE,
    ("benchmarks/perf/service_api.py", "sportlens.service.embedded_redis"): _PERF_SERVICE,
    ("benchmarks/perf/service_api.py", "sportlens.service.settings"): _PERF_SERVICE,
    ("benchmarks/perf/service_limits.py", "sportlens.service.auth"): _PERF_SERVICE,
    ("benchmarks/perf/service_limits.py", "sportlens.service.embedded_redis"): _PERF_SERVICE,
    ("benchmarks/perf/vllm_agent.py", "sportlens.vllm_server"): _VLLM_SERVER,
    ("training/commands.py", "sportlens.cli"): _CIRCLE,
    ("benchmarks/gpu/check_cuda_backend.py", "sportlens.training.demo_model"): _DEMO_MODEL,
    ("benchmarks/perf/vllm_agent.py", "sportlens.training.demo_model"): _DEMO_MODEL,
    ("training/commands.py", "sportlens.benchmarks.commands"): _SIBLINGS,
    ("training/commands.py", "sportlens.benchmarks.loaders"): _SIBLINGS,
    ("training/commands.py", "sportlens.benchmarks.oracle"): _SIBLINGS,
    ("training/commands.py", "sportlens.benchmarks.visual_oracle"): _SIBLINGS,
    ("training/config.py", "sportlens.benchmarks.commands"): _SIBLINGS,
    ("training/demo_model.py", "sportlens.benchmarks"): _SIBLINGS,
    ("training/distill.py", "sportlens.benchmarks.scoring"): _SIBLINGS,
    ("training/full_run.py", "sportlens.benchmarks"): _SIBLINGS,
    ("training/full_run.py", "sportlens.benchmarks.evidence"): _SIBLINGS,
    ("training/full_run.py", "sportlens.benchmarks.loaders"): _SIBLINGS,
    ("training/full_run.py", "sportlens.benchmarks.runner"): _SIBLINGS,
    ("training/full_run.py", "sportlens.benchmarks.sportsim"): _SIBLINGS,
    ("training/full_run.py", "sportlens.benchmarks.visual_oracle"): _SIBLINGS,
    ("training/grpo.py", "sportlens.benchmarks.judge"): _SIBLINGS,
    ("training/grpo.py", "sportlens.benchmarks.loaders"): _SIBLINGS,
    ("training/rewards.py", "sportlens.benchmarks.judge"): _SIBLINGS,
    ("training/rewards.py", "sportlens.benchmarks.scoring"): _SIBLINGS,
    ("training/visual_drills.py", "sportlens.benchmarks.sportsim_visual"): _SIBLINGS,
    ("training/visual_drills.py", "sportlens.benchmarks.visual_oracle"): _SIBLINGS,
    ("training/visual_pretrain.py", "sportlens.benchmarks"): _SIBLINGS,
}


@dataclass(frozen=True)
class Arrow:
    """One import of a sportlens module: where it is written, what it imports, and whether a function hides it."""

    path: str
    line: int
    module: str
    in_function: bool

    @property
    def source(self) -> str:
        return self.path.split("/")[0]

    @property
    def target(self) -> str:
        parts = self.module.split(".")
        return parts[1] if len(parts) > 1 and parts[1] in LAYER_PACKAGES else "sportlens"

    def breaks_the_layers(self) -> bool:
        return self.source != self.target and FLOORS[self.target] >= FLOORS[self.source]


def module_name(path: Path) -> list[str]:
    """The installed name of a file as parts: tools/video.py is sportlens.tools.video, sportlens/cli.py sportlens.cli."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return parts if parts[0] == "sportlens" else ["sportlens", *parts]


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
    return sorted(path for folder in FLOORS for path in (ROOT / folder).rglob("*.py"))


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
    assert module_name(ROOT / "sportlens" / "cli.py") == ["sportlens", "cli"]
    up_two = ast.parse("from ..tools import frames").body[0]
    assert imported_modules(up_two, ["sportlens", "agent", "loop"], False) == ["sportlens.tools"]
    assert imported_modules(ast.parse("from . import base").body[0], module_name(init)[:-1], True) == [
        "sportlens.agent.backends"
    ]
    assert imported_modules(ast.parse("from sportlens import cli, models").body[0], ["sportlens", "x"], False) == [
        "sportlens.cli", "sportlens.models"
    ]
    assert Arrow("service/jobs.py", 1, "sportlens.cli", True).breaks_the_layers()
    assert Arrow("training/grpo.py", 1, "sportlens.benchmarks.judge", False).breaks_the_layers()
    assert not Arrow("sportlens/cli.py", 1, "sportlens.training.commands", True).breaks_the_layers()
    assert not Arrow("tools/video.py", 1, "sportlens.tools.frames", False).breaks_the_layers()


def test_imports_point_down_the_layers():
    found = arrows()
    between = [arrow for arrow in found if arrow.source != arrow.target]
    breaking = [arrow for arrow in between if arrow.breaks_the_layers()]
    new = [arrow for arrow in breaking if (arrow.path, arrow.module) not in KNOWN_VIOLATIONS]
    gone = sorted(set(KNOWN_VIOLATIONS) - {(arrow.path, arrow.module) for arrow in breaking})
    print(f"\nlayers: {len(layer_modules())} modules, {len(between)} imports between layers "
          f"({sum(a.in_function for a in between)} inside functions); {len(breaking)} point up or between siblings "
          f"({sum(a.in_function for a in breaking)} inside functions), {len(breaking) - len(new)} of them known "
          f"({len(KNOWN_VIOLATIONS)} allow-list entries), {len(new)} new; {len(gone)} allow-list entries gone")
    assert not new, f"imports that point up the layers ({ORDER}):\n" + "\n".join(
        f"  {a.path}:{a.line} imports {a.module} ({a.source} -> {a.target})" for a in new
    )
    assert not gone, "fixed, so remove from KNOWN_VIOLATIONS in tests/test_layers.py:\n" + "\n".join(
        f"  {path} -> {module}" for path, module in gone
    )


if __name__ == "__main__":
    for arrow in arrows():
        if arrow.source != arrow.target:
            mark = "UP" if arrow.breaks_the_layers() else "  "
            print(f"{mark} {arrow.source:>10} -> {arrow.target:<10} {arrow.path}:{arrow.line} {arrow.module}"
                  + (" (in a function)" if arrow.in_function else ""))
