"""OPA builtins the embedded engine refuses at load, and why.

- :data:`NETWORK`: builtins that reach the network (DESIGN §5): a decision must not wait
  on, or leak to, another host.
- :data:`EMBEDDED_MISSING`: builtins rego-cpp (regopy 1.5.2) does not implement. Most
  of them are *declared* but error when called, and rego-cpp turns the error into
  "undefined": ``deny if net.cidr_contains(...)`` would silently never deny, which
  fails open. A bundle that calls one is refused, so the policy is evaluated by an
  engine that has it (``--engine opa``) or rewritten.

The list is measured by ``scripts/builtins_gap.py``. ``make check`` runs its ``--check``,
which fails when this list and the measured gap differ (a regopy upgrade).
"""

from __future__ import annotations

NETWORK = frozenset({"http.send", "net.lookup_ip_addr"})

EMBEDDED_MISSING = frozenset(
    {
        "crypto.x509.parse_and_verify_certificates_with_options",
        "graphql.is_valid",
        "graphql.parse",
        "graphql.parse_and_verify",
        "graphql.parse_query",
        "graphql.parse_schema",
        "graphql.schema_is_valid",
        "http.send",
        "json.match_schema",
        "json.verify_schema",
        "net.cidr_contains",
        "net.cidr_contains_matches",
        "net.cidr_expand",
        "net.cidr_intersects",
        "net.cidr_is_valid",
        "net.cidr_merge",
        "net.lookup_ip_addr",
        "providers.aws.sign_req",
        "rego.metadata.chain",
        "rego.metadata.rule",
        "rego.parse_module",
        "strings.render_template",
        "strings.split_n",
        "trace",
    }
)


def why_refused(builtin: str) -> str:
    """The reason a call of ``builtin`` is refused, for the load error."""
    if builtin in NETWORK:
        return "a builtin that reaches the network"
    return (
        "a builtin the embedded engine (rego-cpp) does not implement; evaluate this "
        "bundle with --engine opa, or avoid the builtin"
    )


REFUSED = NETWORK | EMBEDDED_MISSING
