"""The package's layers, read from the imports in its source (function-level imports included).

The tracker is handed a prepared network and builds no backend; the networks are pure modules;
the backends know networks, never the tracker or the commands. A new import against these rules
fails here with the module and the import named.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "siamtrack"


def imports(module: Path) -> set[str]:
    """The siamtrack modules ``module`` imports at run time (``from siamtrack.x import y`` counts as
    ``siamtrack.x``; imports under ``if TYPE_CHECKING:`` are annotations only and do not count)."""
    tree = ast.parse(module.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
                   for stmt in block.body for n in ast.walk(stmt)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("siamtrack"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names
                         if (PACKAGE.parent / node.module.replace(".", "/") / f"{a.name}.py").is_file())
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("siamtrack"))
    return found


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


MODULES = {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}

# (modules, what they must not import: a prefix matches the module and everything under it)
RULES = [
    (["siamtrack.tracker", "siamtrack.scoring", "siamtrack.redetect", "siamtrack.state", "siamtrack.results",
      "siamtrack.runtime", "siamtrack.styles", "siamtrack.decoders", "siamtrack.presets"],
     ["siamtrack.backends", "siamtrack.api", "siamtrack.weights", "siamtrack.commands", "siamtrack.io",
      "siamtrack.cli", "siamtrack.train", "siamtrack.eval"]),
    (["siamtrack.models"], ["siamtrack.tracker", "siamtrack.backends", "siamtrack.api", "siamtrack.weights",
                            "siamtrack.commands", "siamtrack.train", "siamtrack.eval", "siamtrack.io"]),
    (["siamtrack.backends"], ["siamtrack.tracker", "siamtrack.api", "siamtrack.commands", "siamtrack.cli",
                              "siamtrack.eval", "siamtrack.io"]),
]


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("sources,forbidden", RULES, ids=[r[0][0] for r in RULES])
def test_layers(sources, forbidden):
    wrong = sorted(f"{mod} imports {dep}" for mod, deps in MODULES.items()
                   if any(_under(mod, s) for s in sources) for dep in deps if any(_under(dep, f) for f in forbidden))
    assert not wrong, "; ".join(wrong)


def test_the_rules_see_the_modules_they_name():
    """A renamed module must not make a rule vacuous."""
    for sources, _ in RULES:
        for s in sources:
            assert any(_under(m, s) for m in MODULES), s
    assert "siamtrack.backends" in MODULES["siamtrack.api"] and "siamtrack.tracker" in MODULES["siamtrack.api"]


def test_the_tracker_module_stays_small():
    lines = (PACKAGE / "tracker.py").read_text().count("\n")
    assert lines < 250, f"siamtrack/tracker.py has {lines} lines: move a concern out (scoring, redetect, state...)"
