"""The import rules of docs/architecture.md hold: import-linter's contracts (.importlinter) are kept;
and the test suite's own: shared fixtures live in tests/conftest.py, no test module imports another."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    done = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "Contracts: 5 kept, 0 broken." in done.stdout


def test_the_engine_loads_no_http_layer_scheduler_or_criteria_parser():
    code = ("import sys; import archiver.engine.archive, archiver.engine.purge, archiver.engine.restore; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('flask_smorest', 'marshmallow', 'apscheduler', 'flask_apscheduler', 'sqlglot')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


DIALECT_NAMES = {"postgresql", "mysql", "mariadb", "sqlite"}


def test_explaining_a_sqlite_error_loads_no_other_backend():
    code = ("import sqlite3, sys; from archiver.engine.backends import backend_for, explain; backend_for('sqlite')\n"
            "try:\n    sqlite3.connect(':memory:').execute('SELECT * FROM nope')\n"
            "except sqlite3.Error as exc:\n    print(explain(exc))\n"
            "print(sorted(m for m in sys.modules if m.startswith('archiver.engine.backends.') and m.count('.') == 3))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    reason, loaded = done.stdout.strip().split("\n")
    assert reason == "no such table: nope"  # the SQLite backend's words (sqlite/errors.py)
    assert loaded == ("['archiver.engine.backends.base', 'archiver.engine.backends.serverjson', "
                      "'archiver.engine.backends.sqlite']")


def _dialect_comparisons(path: Path) -> list[int]:
    """Lines of ``path`` that compare something with a dialect name (``x == "postgresql"``,
    ``x in ("mysql", "mariadb")``)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Compare):
            for operand in [node.left, *node.comparators]:
                values = operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
                if any(isinstance(v, ast.Constant) and v.value in DIALECT_NAMES for v in values):
                    lines.append(node.lineno)
    return lines


def test_only_the_backends_branch_on_a_dialect_name(tmp_path):
    """Database differences live in engine/backends/<name>/ (declared capabilities and the backend's
    own operations, e.g. ArchiveOps.payload_reads, Backend.schema_lock); the rest of the engine and
    the services, API, CLI and scheduler compare no dialect name."""
    package = ROOT / "archiver"
    backends = package / "engine" / "backends"
    modules = [p for p in package.rglob("*.py") if backends not in p.parents]
    assert len(modules) > 80 and any(p.parent.name == "services" for p in modules)  # the walk found them
    found = {str(p.relative_to(ROOT)): lines for p in modules if (lines := _dialect_comparisons(p))}
    assert found == {}
    # the check sees what it looks for
    (sample := tmp_path / "sample.py").write_text('if conn.dialect.name in ("mysql", "mariadb"):\n    pass\n'
                                                  'elif dialect == "postgresql":\n    pass\n')
    assert _dialect_comparisons(sample) == [1, 3]


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _is_fixture(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return isinstance(target, ast.Attribute) and target.attr == "fixture"


def test_no_test_module_imports_another_or_the_conftest():
    tests = ROOT / "tests"
    wrong = {path.name: sorted(m for m in _imported_modules(path)
                               if m == "tests.conftest" or m.startswith("tests.test_"))
             for path in sorted(tests.glob("*.py"))}
    assert {name: mods for name, mods in wrong.items() if mods} == {}


def test_shared_fixtures_live_in_the_conftest_only():
    """A helper module (``tests/*_support.py`` and the like) defines no fixture: a fixture imported into a
    test module hides where it comes from and shadows the conftest's."""
    found = {}
    for path in sorted((ROOT / "tests").glob("*.py")):
        if path.name == "conftest.py" or path.name.startswith("test_"):
            continue
        tree = ast.parse(path.read_text(), str(path))
        fixtures = [f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
                    and any(_is_fixture(d) for d in f.decorator_list)]
        if fixtures:
            found[path.name] = fixtures
    assert found == {}
