"""The import-linter contracts in pyproject.toml (run on the real tree by scripts/check) catch
each rule of the design: a tree of stand-in packages that imports only what DESIGN.md allows
keeps every contract, and each single forbidden import breaks the contract that names it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# What each package may import, per DESIGN.md ("Packages and the direction of imports").
ALLOWED = {
    "live": ["gateway", "flash_sales", "rooms", "inventory_lock", "loadtest", "starlette"],
    "gateway": ["flash_sales", "rooms", "starlette", "uvicorn", "websockets"],
    "flash_sales": ["rooms", "inventory_lock", "asyncpg", "redis"],
    "rooms": ["redis"],
    "inventory_lock": ["redis"],
    "loadtest": ["locust", "websocket"],
}


def config() -> dict[str, Any]:
    linter: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"][
        "importlinter"
    ]
    return linter


def contracts() -> dict[str, str]:
    """Contract id -> name."""
    return {c["id"]: c["name"] for c in config()["contracts"]}


def stand_in_tree(root: Path, extra: tuple[str, str] | None = None) -> None:
    """A package of each name under `root`, importing what ALLOWED lets it; `extra` (importer,
    imported) adds one more import in a module of its own."""
    for package, imports in ALLOWED.items():
        (root / package).mkdir()
        (root / package / "__init__.py").write_text("")
        (root / package / "core.py").write_text("".join(f"import {m}\n" for m in imports))
    if extra is not None:
        importer, imported = extra
        (root / importer / "extra.py").write_text(f"import {imported}\n")


def lint(root: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """lint-imports with the project's contracts on the tree under `root`."""
    return subprocess.run(
        [str(LINT_IMPORTS), str(REPO / "pyproject.toml"), "--no-cache", "--no-logo", *options],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root), "COLUMNS": "1000", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def broken(root: Path) -> set[str]:
    """The ids of the contracts lint-imports reports broken on the tree under `root`."""
    result = lint(root)
    output = result.stdout + result.stderr
    names = {name: id_ for id_, name in contracts().items()}
    found = {names[m] for m in re.findall(r"^(.+?) BROKEN$", result.stdout, re.MULTILINE)}
    kept = re.findall(r"^(.+?) KEPT$", result.stdout, re.MULTILINE)
    assert len(kept) + len(found) == len(names), output
    assert (result.returncode != 0) == bool(found), output
    return found


def test_every_package_of_ours_is_under_contract() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    installed = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in installed} == set(config()["root_packages"]) == set(ALLOWED)


def test_the_allowed_imports_keep_every_contract(tmp_path: Path) -> None:
    stand_in_tree(tmp_path)
    assert broken(tmp_path) == set()


@pytest.mark.parametrize(
    ("importer", "imported", "contract_ids"),
    [
        ("rooms", "flash_sales", {"layers"}),
        ("rooms", "inventory_lock", {"layers"}),
        ("flash_sales", "gateway", {"layers", "domain-no-web"}),
        ("gateway", "live", {"layers", "gateway-edge"}),
        ("gateway", "inventory_lock", {"gateway-edge"}),
        ("gateway", "loadtest", {"gateway-edge"}),
        ("inventory_lock", "rooms", {"layers", "inventory-lock-alone"}),
        ("inventory_lock", "loadtest", {"domain-no-web", "inventory-lock-alone"}),
        ("rooms", "starlette", {"domain-no-web"}),
        ("flash_sales", "uvicorn", {"domain-no-web"}),
        ("inventory_lock", "websockets", {"domain-no-web"}),
        ("rooms", "live", {"layers", "domain-no-web"}),
        ("loadtest", "rooms", {"loadtest-outside"}),
        ("loadtest", "live", {"loadtest-outside"}),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, importer: str, imported: str, contract_ids: set[str]
) -> None:
    stand_in_tree(tmp_path, (importer, imported))
    assert broken(tmp_path) == contract_ids


def test_a_chain_through_another_package_counts(tmp_path: Path) -> None:
    """flash_sales -> rooms -> starlette: flash_sales holds web code too."""
    stand_in_tree(tmp_path, ("rooms", "starlette"))
    (tmp_path / "flash_sales" / "chain.py").write_text("import rooms.extra\n")
    result = lint(tmp_path, "--contract", "domain-no-web")
    assert "flash_sales is not allowed to import starlette" in result.stdout, result.stdout
    assert "flash_sales.chain -> rooms.extra" in result.stdout, result.stdout
