"""The README's layout is the code's: every folder it lists exists, every package is listed, and no module imports
from a folder listed above its own (dependencies point inward: cli -> engine -> tasks -> ... -> core)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OTHER = ("prompts/", "tests/", "benchmarks/")  # listed for orientation, not layers of the import graph


def readme_layers() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    return [line.split()[0] for line in block.splitlines() if line.strip()]


def folder_of(module: str, layers: list[str]) -> str | None:
    """The listed folder a dotted module name lives in (the longest match: harness/cli/ before harness/)."""
    path = module.replace(".", "/") + "/"
    matches = [f for f in layers if path.startswith(f)]
    return max(matches, key=len) if matches else None


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):  # lazy imports inside functions count too
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_readme_layout_lists_exactly_the_folders():
    layers = readme_layers()
    for folder in layers:
        assert (REPO / folder).is_dir(), f"README lists {folder}, which does not exist"
    packages = {f"{p.parent.relative_to(REPO).as_posix()}/" for p in REPO.glob("harness/*/__init__.py")}
    packages |= {f"{p.parent.relative_to(REPO).as_posix()}/" for p in REPO.glob("*/__init__.py")} - {"tests/", "harness/"}
    missing = sorted(packages - set(layers))
    assert not missing, f"packages the README's layout does not list: {missing}"


def test_imports_point_down_the_layers():
    layers = [f for f in readme_layers() if f not in OTHER]
    rank = {f: i for i, f in enumerate(layers)}
    wrong = []
    for folder in layers:
        for path in sorted((REPO / folder).rglob("*.py")):
            module = path.relative_to(REPO).with_suffix("").as_posix().replace("/", ".")
            here = folder_of(module, layers)
            for name in imports_of(path):
                there = folder_of(name, layers)
                if there is not None and rank[there] < rank[here]:
                    wrong.append(f"{path.relative_to(REPO)} imports {name} ({there} is listed above {here})")
    assert not wrong, "imports that run up the layers:\n" + "\n".join(sorted(set(wrong)))


def test_no_module_is_over_500_lines():
    long = []
    for folder in ("harness", "tasks", "defacers", "leaderboard"):
        for path in (REPO / folder).rglob("*.py"):
            n = path.read_text(encoding="utf-8").count("\n")
            if n > 500:
                long.append(f"{path.relative_to(REPO)}: {n} lines")
    assert not long, long


def test_no_comment_cites_a_file_outside_the_repository():
    cited = re.compile(r"\b(DESIGN|NOTES)\.md\b|shared/")
    found = [f"{p.relative_to(REPO)}" for folder in ("harness", "tasks", "defacers", "leaderboard", "prompts")
             for p in (REPO / folder).rglob("*") if p.suffix in (".py", ".j2", ".md") and cited.search(p.read_text(encoding="utf-8"))]
    assert not found, found
