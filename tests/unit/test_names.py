"""One meaning per name: no public class or type alias is defined in two modules of the product
packages (issue 13).

A name that means one thing is defined once and imported where it is used (``WorkerRef`` and
``Clock`` live in :mod:`byteleap.aliases`, ``LeaseStatus`` in
:mod:`byteleap.sessions.lease_events`); two things get two names (``AgentEvent``,
``LeaseTableEvent``, ``RoundEvent``, ...). Functions, constants (``UPPER_CASE``) and private
names (``_x``) are out of scope, and so are re-exports (``from x import Name``): only
definitions count.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: the product packages; devnet/ and bench/ are tools around them, named on their own
PACKAGES = ("byteleap", "neurons", "workers", "daemonkit")
#: deliberate duplicates, name -> why (none today)
ALLOWED: dict[str, str] = {}


def _is_public_type_name(name: str) -> bool:
    """``CamelCase``, not private and not an ``UPPER_CASE`` constant or a one-letter TypeVar."""
    return name[:1].isupper() and not name.isupper()


def top_level_types(tree: ast.Module) -> list[str]:
    """The public classes and capitalised aliases a module defines at its top level."""
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
        elif type(node).__name__ == "TypeAlias":  # ``type X = ...`` (Python 3.12+)
            names.append(node.name.id)  # type: ignore[attr-defined]
    return [n for n in names if _is_public_type_name(n)]


def definitions() -> dict[str, list[str]]:
    """Each public type name -> the modules that define it."""
    where: dict[str, list[str]] = defaultdict(list)
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            for name in top_level_types(ast.parse(path.read_text(encoding="utf-8"))):
                where[name].append(module)
    return where


def test_every_public_type_name_is_defined_once() -> None:
    clashes = {
        name: modules
        for name, modules in definitions().items()
        if len(modules) > 1 and name not in ALLOWED
    }
    assert clashes == {}, "defined in more than one module (rename one, or import it):\n" + (
        "\n".join(f"  {name}: {', '.join(modules)}" for name, modules in sorted(clashes.items()))
    )


def test_the_scan_sees_classes_and_aliases() -> None:
    tree = ast.parse(
        "class Plan: ...\n"
        "WorkerRef = tuple[str, str]\n"
        "Status: TypeAlias = str\n"
        "MAX_GPUS = 8\n"
        "T = TypeVar('T')\n"
        "class _Private: ...\n"
        "def helper() -> None: ...\n"
    )
    assert top_level_types(tree) == ["Plan", "WorkerRef", "Status"]
    assert "WorkerKey" in definitions()  # the signing key, in byteleap.crypto
    assert definitions()["WorkerRef"] == ["byteleap.aliases"]


def test_allowed_duplicates_still_exist() -> None:
    """An exception that no longer applies is removed from :data:`ALLOWED`."""
    where = definitions()
    assert [name for name in ALLOWED if len(where.get(name, [])) < 2] == []
