#!/usr/bin/env python3
"""Which OPA builtins the embedded engine (rego-cpp, through regopy) lacks — measured.

For every builtin ``opa capabilities --current`` lists (the pinned OPA), minus
``internal.*`` and the deprecated ones (OPA itself refuses those in Rego v1 modules),
it evaluates a call with regopy, arguments made from the builtin's declared types:
  - the call evaluates: available;
  - rego-cpp answers "Function not found": **unknown** — capgate's embedded engine
    fails the evaluation, so the decision is DENY POLICY_ERROR (fail closed);
  - otherwise, if ``Interpreter.is_builtin`` is false: **placeholder** — rego-cpp
    declares it, but calling it is an error, which rego-cpp (like OPA without
    ``--strict-builtin-errors``) turns into *undefined*: the expression is silently
    false, where OPA would have computed it;
  - otherwise available (the sample arguments were merely wrong for it).
Each missing builtin is then checked to compile in a Rego v1 module with ``opa check``.
The calls run in a child process (``--probe``), restarted past any call that crashes
rego-cpp; such calls are listed under the table.

    .venv/bin/python scripts/builtins_gap.py           print the Markdown table
    .venv/bin/python scripts/builtins_gap.py --write   rewrite it in docs/security-teams/engines.md
    .venv/bin/python scripts/builtins_gap.py --check   exit 1 if that table is stale

Every mode also exits 1 when the measured gap differs from
``capgate.policy.builtins.EMBEDDED_MISSING``, the list capgate refuses at load.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from regopy import Interpreter
from regopy.rego_shared import rego_output_ok, rego_output_string, rego_query

from capgate.policy.builtins import EMBEDDED_MISSING

ROOT = Path(__file__).resolve().parent.parent
OPA = ROOT / ".tools" / "bin" / "opa"
DOC = ROOT / "docs" / "security-teams" / "engines.md"
MARK = "@@"
BEGIN, END = "<!-- builtins-gap:begin -->", "<!-- builtins-gap:end -->"
SAMPLES = {"string": '"a"', "number": "1", "boolean": "true", "null": "null"}
SAMPLES |= {"array": "[]", "set": "set()", "object": "{}"}


@dataclass(frozen=True)
class Missing:
    name: str
    kind: str  # "unknown" | "placeholder"
    opa_compiles: bool


def sample(decl: dict[str, Any]) -> str:
    """A Rego literal of the declared type (the first alternative of a union)."""
    if decl.get("type") == "any" and isinstance(decl.get("of"), list) and decl["of"]:
        return sample(decl["of"][0])
    return SAMPLES.get(decl.get("type", ""), "null")


def call(builtin: dict[str, Any]) -> str:
    """A statement binding ``x`` to a call of ``builtin`` (operators in infix form)."""
    args = [sample(a) for a in builtin["decl"].get("args", [])]
    op = builtin.get("infix")
    if op in ("=", ":="):
        return f"x {op} {args[1]}"
    if op:
        return f"x := {args[0]} {op} {args[1]}"
    return f"x := {builtin['name']}({', '.join(args)})"


def rego_cpp_kind(interpreter: Interpreter, builtin: dict[str, Any]) -> str:
    """``"ok"`` if rego-cpp has ``builtin``, else ``"unknown"`` or ``"placeholder"``."""
    output = rego_query(interpreter._impl, call(builtin))  # raw: Output() parses JSON
    text = rego_output_string(output) if rego_output_ok(output) else ""
    if "Function not found" in text:
        return "unknown"
    if text.startswith("{") and '"x"' in text:
        return "ok"  # it evaluated
    return "ok" if interpreter.is_builtin(builtin["name"]) else "placeholder"


def probe() -> int:
    """Child mode: one JSON builtin per stdin line in, one ``@@ name kind`` line out each."""
    interpreter = Interpreter()
    interpreter.strict_built_in_errors = True
    for line in sys.stdin:
        builtin = json.loads(line)
        print(MARK, builtin["name"], rego_cpp_kind(interpreter, builtin), flush=True)
    return 0


def kinds(builtins: list[dict[str, Any]]) -> dict[str, str]:
    """``rego_cpp_kind`` of each builtin, ``"crash"`` where the call killed the child."""
    out: dict[str, str] = {}
    answer = re.compile(rf"{re.escape(MARK)} (\S+) (\S+)$")
    while rest := [b for b in builtins if b["name"] not in out]:
        child = subprocess.run(
            [sys.executable, __file__, "--probe"],
            input="".join(json.dumps(b) + "\n" for b in rest),
            capture_output=True,
            text=True,
        )
        # rego-cpp prints parse errors on stdout too, possibly on the answer's line.
        answered = dict(m.groups() for m in map(answer.search, child.stdout.splitlines()) if m)
        out |= answered
        unanswered = [b["name"] for b in rest if b["name"] not in answered]
        if child.returncode != 0 and unanswered:  # the first unanswered one killed it
            out[unanswered[0]] = "crash"
        elif not answered:
            raise RuntimeError(f"the probe answered nothing for {rest[0]['name']}:\n{child.stdout}")
    return out


def opa_compiles(opa: Path, builtin: dict[str, Any]) -> bool:
    """Whether a Rego v1 module calling ``builtin`` passes ``opa check`` (one module per
    run: OPA's compiler stops at the first stage with errors)."""
    with tempfile.TemporaryDirectory() as tmp:
        module = Path(tmp) / "gap.rego"
        module.write_text(f"package gap\n\nr if {{\n\t{call(builtin)}\n}}\n")
        return subprocess.run([str(opa), "check", str(module)], capture_output=True).returncode == 0


def measure(opa: Path) -> tuple[list[Missing], list[str], int]:
    capabilities = json.loads(
        subprocess.run(
            [str(opa), "capabilities", "--current"], check=True, capture_output=True, text=True
        ).stdout
    )
    candidates = [
        b
        for b in capabilities["builtins"]
        if not b["name"].startswith("internal.") and not b.get("deprecated")
    ]
    found = kinds(candidates)
    lacking = [b for b in candidates if found[b["name"]] in ("unknown", "placeholder")]
    missing = [Missing(b["name"], found[b["name"]], opa_compiles(opa, b)) for b in lacking]
    crashes = [call(b).removeprefix("x := ") for b in candidates if found[b["name"]] == "crash"]
    return missing, crashes, len(candidates)


def table(opa: Path) -> tuple[str, set[str]]:
    """The Markdown table, and the names of the builtins the embedded engine lacks."""
    missing, crashes, total = measure(opa)
    opa_version = (
        subprocess.run([str(opa), "version"], check=True, capture_output=True, text=True)
        .stdout.splitlines()[0]
        .removeprefix("Version: ")
    )
    lines = [
        f"Measured by `scripts/builtins_gap.py`: OPA {opa_version} lists {total} builtins "
        f"usable in Rego v1 (not `internal.*`, not deprecated); regopy "
        f"{version('regopy')} lacks {len(missing)}.",
        "",
        "| Builtin | In rego-cpp | A call on the embedded engine |",
        "|---|---|---|",
    ]
    effect = {
        "unknown": ("not found", "bundle refused at load (a call would fail: POLICY_ERROR)"),
        "placeholder": (
            "declared, errors when called",
            "bundle refused at load (a call would be **silently undefined**)",
        ),
    }
    for m in sorted(missing, key=lambda m: m.name):
        where, what = effect[m.kind]
        note = "" if m.opa_compiles else " (the sample call does not compile in OPA either)"
        lines.append(f"| `{m.name}` | {where} | {what}{note} |")
    if crashes:
        calls = ", ".join(f"`{c}`" for c in crashes)
        lines += ["", f"Sample calls that crashed rego-cpp (the process, not the query): {calls}."]
    return "\n".join(lines) + "\n", {m.name for m in missing}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"rewrite the table in {DOC.name}")
    mode.add_argument("--check", action="store_true", help=f"exit 1 if {DOC.name} is stale")
    mode.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--opa", type=Path, default=OPA, help="the opa binary")
    args = parser.parse_args()
    if args.probe:
        return probe()
    generated, names = table(args.opa)
    if names != set(EMBEDDED_MISSING):
        print(
            "builtins_gap: capgate/policy/builtins.py EMBEDDED_MISSING differs from the "
            f"measured gap: add {sorted(names - EMBEDDED_MISSING)}, "
            f"remove {sorted(EMBEDDED_MISSING - names)}",
            file=sys.stderr,
        )
        return 1
    if not (args.write or args.check):
        print(generated, end="")
        return 0
    doc = DOC.read_text("utf-8")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    wanted = f"{head}{BEGIN}\n{generated}{END}{tail}"
    if args.check:
        if wanted != doc:
            print(f"builtins_gap: {DOC.relative_to(ROOT)} is stale; run --write", file=sys.stderr)
            return 1
        print("builtins_gap: table is up to date")
        return 0
    DOC.write_text(wanted, "utf-8")
    print(f"builtins_gap: table written to {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
