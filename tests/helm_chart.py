"""The Helm chart as the tests render it: the pinned helm, ``helm template`` with an
overlay and ``--set`` values, the rendered documents."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT

HELM = ROOT / ".tools" / "bin" / "helm"
K8SVALIDATE = ROOT / ".tools" / "bin" / "k8svalidate"
CHART = ROOT / "helm" / "capgate"
AGENT = ROOT / "helm" / "examples" / "agent"


def run(*args: str, stdin: str | None = None, cwd: Path = ROOT) -> str:
    proc = subprocess.run(
        list(args), input=stdin, capture_output=True, text=True, cwd=cwd, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def template_command(chart: Path, overlay: str, sets: Iterable[str]) -> list[str]:
    """``helm template`` of ``chart`` with ``overlay`` (a file in it) and ``--set`` values."""
    args = [str(HELM), "template", "t", str(chart)]
    if overlay:
        args += ["-f", str(chart / overlay)]
    for value in sets:
        args += ["--set", value]
    return args


def render(chart: Path, overlay: str = "", *sets: str) -> str:
    return run(*template_command(chart, overlay, sets))


def render_refused(*sets: str) -> str:
    """``helm template`` of the chart with ``--set`` values it must refuse: its stderr."""
    proc = subprocess.run(
        template_command(CHART, "", sets), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0, proc.stdout
    return proc.stderr


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, [d["kind"] for d in docs]
    return found[0]
