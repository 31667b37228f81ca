# METADATA
# title: Capability rules
# description: |
#   Rules over data.capgate.capabilities[<name>]:
#     tools              tools the capability covers (list)
#     required_scopes    scopes the principal must hold, all of them (list)
#     idempotency_key    "required" to deny calls without one
#     require, deny_if, requires_approval_if, requires_approval: see conditions
#     approval           {approver_roles, min_approvals, ttl_seconds}
#     class              "read" | "write" (default "write")
#     enforcement        "enforce" | "shadow" (default "enforce")
#     obligations        [{type, parameters}] returned with ALLOW
#     mask               input paths masked in decision events
package capgate.lib.capability

import data.capgate.lib.conditions
import data.capgate.lib.request

definition := data.capgate.capabilities[input.capability]

known if definition

deny contains {"code": "UNKNOWN_CAPABILITY", "message": "this capability is not defined"} if {
	not known
}

deny contains {"code": "TOOL_NOT_COVERED", "message": "this tool is not covered by the capability"} if {
	known
	not request.tool in object.get(definition, "tools", [])
}

deny contains {"code": "MISSING_SCOPE", "message": sprintf("the principal lacks scope %s", [scope])} if {
	some scope in object.get(definition, "required_scopes", [])
	not scope in request.scopes
}

deny contains {"code": "IDEMPOTENCY_KEY_REQUIRED", "message": "this capability requires an idempotency_key"} if {
	object.get(definition, "idempotency_key", "optional") == "required"
	request.idempotency_key == ""
}

deny contains r if {
	known
	some r in conditions.deny_reasons(definition, request.parameters)
}

approval_reasons contains r if {
	known
	some r in conditions.approval_reasons(definition, request.parameters)
}

class := object.get(definition, "class", "write") if known

else := "write"

enforcement := object.get(definition, "enforcement", "enforce") if known

else := "enforce"

obligations := object.get(definition, "obligations", []) if known

else := []

mask := object.get(definition, "mask", []) if known

else := []

approval := definition.approval
