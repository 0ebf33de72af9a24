"""The README's layout section names every module and package of scanbatch, and nothing that
is gone: a newcomer finds where a thing lives from it."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "scanbatch"


def layout_names() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("scanbatch/            the package\n")
    block = readme[start : readme.index("```", start)]
    names = set()
    for line in block.splitlines()[1:]:
        if not line.startswith("  ") or line.startswith("   "):
            continue  # a continuation line, or a top-level entry (notebooks/, tests/, ...)
        names.update(re.findall(r"[a-z_]+(?:\.py|/)", line.split("  ")[1].split()[0]))
    return names


def package_entries() -> set[str]:
    entries = set()
    for path in PACKAGE.iterdir():
        if path.name.startswith(("_", ".")):
            continue
        if path.is_dir() and (path / "__init__.py").exists():
            entries.add(path.name + "/")
        elif path.suffix == ".py":
            entries.add(path.name)
    return entries


def test_the_readme_layout_is_the_package_tree():
    listed, present = layout_names(), package_entries()
    assert not present - listed, f"not in the README's layout: {sorted(present - listed)}"
    assert not listed - present, f"in the README's layout but gone: {sorted(listed - present)}"
