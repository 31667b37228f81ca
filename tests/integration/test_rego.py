"""`opa test` on the Rego library with the pinned OPA."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.conftest import ROOT


def test_opa_test_passes_on_the_rego_library(opa_binary: Path) -> None:
    proc = subprocess.run(
        [str(opa_binary), "test", "rego/"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    passed = re.search(r"PASS: (\d+)/(\d+)", proc.stdout)
    assert passed is not None and passed.group(1) == passed.group(2)
    assert int(passed.group(1)) >= 90
