"""Every experiment and benchmark script imports: a moved library name breaks a script only when it runs, which for
most of them is a long run nobody makes in CI (three scripts imported ``plots`` from its old place for a while)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = sorted([*(ROOT / "experiments").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")])

# One interpreter imports every script (the imports, not the ``__main__`` blocks) and reports each one's error.
IMPORT_ALL = """
import importlib.util, json, sys, traceback
errors = {}
for path in sys.argv[1:]:
    folder = path.rsplit("/", 1)[0]
    if folder not in sys.path:
        sys.path.insert(0, folder)  # scripts import their neighbours (classification_measures -> mnist_gans)
    name = "script_" + path.rsplit("/", 2)[-2] + "_" + path.rsplit("/", 1)[-1][:-3]
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except BaseException:
        errors[path] = traceback.format_exc(limit=3)
print(json.dumps(errors))
"""


@pytest.mark.timeout(600)
def test_every_script_imports():
    assert len(SCRIPTS) > 20, "the glob should find the experiment and benchmark scripts"
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, *map(str, SCRIPTS)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    errors = json.loads(result.stdout.strip().splitlines()[-1])
    assert not errors, "scripts that do not import:\n" + "\n".join(f"{k}:\n{v}" for k, v in errors.items())
