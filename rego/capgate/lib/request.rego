# METADATA
# title: Request accessors
# description: |
#   The input is proto3 JSON: fields at their default value are absent. Read
#   request fields through these rules so a missing field has its default and
#   no rule silently becomes undefined (which would fail open for deny rules).
package capgate.lib.request

parameters := object.get(input, "parameters", {})

scopes := object.get(input.principal, "scopes", [])

roles := object.get(input.principal, "roles", [])

tool := object.get(input, "tool", "")

idempotency_key := object.get(input, "idempotency_key", "")

run_id := object.get(object.get(input, "run", {}), "run_id", "")

workflow := object.get(object.get(input, "run", {}), "workflow", "")
