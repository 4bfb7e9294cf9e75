"""Who imports whom across calcstream's packages: ``python -m tests.floors`` prints the counts.

The floors (``../shared/STYLE.md``): ``schemas`` (the contract) and ``core`` (the foundation)
stand under everything; the worker (``consumer``) and the API (``producer_api``) stand side by
side on them and never on each other; the command line and the dev stack may start the
worker; the Python client needs neither service.
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "core", "consumer", "producer_api", "calcstream.client",
            "calcstream.cli", "calcstream.dev", "calcstream")


def package_of(module: str) -> str | None:
    """The package of ours a dotted module name belongs to (the longest that matches)."""
    for package in PACKAGES:
        if module == package or module.startswith(package + "."):
            return package
    return None


def imports(root: Path = ROOT) -> Counter[tuple[str, str]]:
    """(importing package, imported package) → how many import statements, across packages."""
    counts: Counter[tuple[str, str]] = Counter()
    for package in PACKAGES:
        folder = root.joinpath(*package.split("."))
        for path in folder.rglob("*.py"):
            module = ".".join(path.relative_to(root).with_suffix("").parts)
            importer = package_of(module)
            if importer != package:
                continue  # a subpackage's file, counted under it
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                for name in names:
                    imported = package_of(name)
                    if imported is not None and imported != importer:
                        counts[(importer, imported)] += 1
    return counts


def main() -> None:
    """Print every cross-package import count."""
    width = max(len(p) for p in PACKAGES)
    for (importer, imported), n in sorted(imports().items()):
        print(f"{importer:>{width}} -> {imported:<{width}} {n}")


if __name__ == "__main__":
    main()
    sys.exit(0)
