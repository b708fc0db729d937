"""The import rules of docs/architecture.md hold: import-linter's contracts (.importlinter) are kept."""
from __future__ import annotations

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
