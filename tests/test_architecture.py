"""The package's shape, enforced: the import contracts between the planes ([tool.importlinter]
in pyproject.toml: the planes form a DAG and no import cycle exists, function-local imports
included) and every module importing alone in a fresh interpreter (aiohttp's
tests/test_circular_imports.py idea: an import cycle that only works in one import order
fails here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "llm_proxy"
# `python -m llm_proxy` runs the CLI: importing it is not a test of anything.
_SKIP = frozenset({"llm_proxy.__main__"})


def _modules() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts)
        if name not in _SKIP:
            found.append(name)
    return found


MODULES = _modules()


def test_import_contracts(capsys: pytest.CaptureFixture[str]) -> None:
    """`lint-imports` on the project's configuration (no cache: nothing written to the tree)."""
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    assert code == 0, capsys.readouterr().out


# One interpreter loads the libraries the package imports (none of the package itself), then
# forks a child per module that imports that module alone: each child starts from no llm_proxy
# module loaded, as a fresh interpreter would, without paying every interpreter's start and the
# third-party imports 97 times (45 s of CPU on a busy machine; this takes a few).
_FORKING_IMPORTER = r"""
import ast, importlib, json, os, pathlib, sys, traceback
root, out, jobs, *modules = sys.argv[1:]
libraries = set()
for path in pathlib.Path(root, "llm_proxy").rglob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            libraries.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            libraries.add(node.module)
for name in sorted(libraries):
    if name.split(".")[0] != "llm_proxy":
        try:
            importlib.import_module(name)
        except BaseException:
            pass  # the child imports it itself, and fails there if it must
assert not [m for m in sys.modules if m.split(".")[0] == "llm_proxy"]
children, codes = {}, {}
def reap():
    pid, status = os.waitpid(-1, 0)
    codes[children.pop(pid)] = os.waitstatus_to_exitcode(status)
for module in modules:
    if len(children) == int(jobs):
        reap()
    pid = os.fork()
    if pid == 0:
        os.dup2(os.open(os.path.join(out, module), os.O_WRONLY | os.O_CREAT), 2)
        code = 0
        try:
            importlib.import_module(module)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stderr.flush()
        os._exit(code)
    children[pid] = module
while children:
    reap()
print(json.dumps(codes))
"""


@pytest.fixture(scope="module")
def imported_alone(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str]]:
    """Every module imported alone: its exit status and its traceback."""
    out = tmp_path_factory.mktemp("imports")
    jobs = str(max(2, os.cpu_count() or 1))
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-c",
            _FORKING_IMPORTER,
            str(ROOT),
            str(out),
            jobs,
            *MODULES,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    codes = json.loads(done.stdout)
    return {module: (codes[module], (out / module).read_text()) for module in MODULES}


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone(module: str, imported_alone: dict[str, tuple[int, str]]) -> None:
    code, stderr = imported_alone[module]
    assert code == 0, f"`import {module}` in a fresh interpreter failed:\n{stderr}"
