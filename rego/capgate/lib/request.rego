# METADATA
# title: Request accessors
# description: |
#   The input is proto3 JSON: fields at their default value are absent. Read
#   request fields through these rules so a missing field has its default and
#   no rule silently becomes undefined (which would fail open for deny rules).
#   `x := input.k` with else is cheaper in rego-cpp than object.get(input, k, d).
package capgate.lib.request

parameters := p if {
	p := input.parameters
} else := {}

scopes := object.get(input.principal, "scopes", [])

roles := object.get(input.principal, "roles", [])

tool := t if {
	t := input.tool
} else := ""

idempotency_key := k if {
	k := input.idempotency_key
} else := ""

run_id := r if {
	r := input.run.run_id
} else := ""

workflow := w if {
	w := input.run.workflow
} else := ""
