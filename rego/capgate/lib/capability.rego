# METADATA
# title: Capability rules
# description: |
#   Rules over data.capgate.capabilities[<name>]:
#     tools              tools the capability covers (list)
#     required_scopes    scopes the principal must hold, all of them (list)
#     idempotency_key    "required" to deny calls without one
#     workflows          workflows the capability may be used in (list); when set,
#                        a request naming no workflow or another one is denied, so
#                        a caller cannot shed a workflow's run limits by omitting it
#     require, deny_if, requires_approval_if, requires_approval: see conditions
#     approval           {approver_roles, min_approvals, ttl_seconds}
#     class              "read" | "write" (default "write")
#     enforcement        "enforce" | "shadow" (default "enforce")
#     obligations        [{type, parameters}] returned with ALLOW
#     mask               input paths masked in decision events
#     audit_required     true: when the decision log cannot take another event
#                        (its outbox is full), deny AUDIT_UNAVAILABLE rather than
#                        drop the oldest events
#   The reasons come as arrays in a fixed order (deny_list, approval_list) and
#   as sets (deny, approval_reasons). The entrypoint reads the arrays: rego-cpp
#   builds sets of objects slowly and iterates them in another order than OPA.
package capgate.lib.capability

import data.capgate.lib.conditions
import data.capgate.lib.lookup
import data.capgate.lib.request

# definition: data.capgate.capabilities[input.capability], read through the
# embedded engine's index when it has one (see capgate.lib.lookup); false when
# the data does not define the capability, which every rule here takes as
# undefined. Always defined: rego-cpp keeps a rule's value for the rest of the
# query, but evaluates an undefined rule again at every reference (a dozen
# here). (Not wrapped as [definition]: rego-cpp would copy the definition.)
definition := d if {
	d := lookup.entry("capabilities", input.capability)
} else := d if {
	not data.capgate_index.indexed.capabilities
	d := data.capgate.capabilities[input.capability]
} else := false

# known: the capability is defined (and not false). Tested with is_boolean, not
# by comparing the definition with false: rego-cpp compares objects slowly.
known if {
	d := definition
	not is_boolean(d)
} else if {
	definition == true
}

# deny_list: the deny reasons in a fixed order: TOOL_NOT_COVERED,
# MISSING_SCOPE (in required_scopes order), IDEMPOTENCY_KEY_REQUIRED,
# WORKFLOW_NOT_ALLOWED, then the
# require and deny_if conditions (see conditions.deny_list); or only
# UNKNOWN_CAPABILITY.
deny_list := [r |
	some list in [
		tool_not_covered,
		missing_scopes,
		idempotency_key_required,
		workflow_not_allowed,
		conditions.deny_list(definition, request.parameters),
	]
	some r in list
] if {
	known
} else := [{"code": "UNKNOWN_CAPABILITY", "message": "this capability is not defined"}]

# tools: the tools the capability covers. Bound before `not tool in tools`:
# `not x in <undefined>` holds in rego-cpp but not in OPA.
tools := t if {
	t := definition.tools
} else := []

tool_not_covered := [{"code": "TOOL_NOT_COVERED", "message": "this tool is not covered by the capability"} |
	tool := request.tool
	not tool in tools
]

missing_scopes := [{"code": "MISSING_SCOPE", "message": sprintf("the principal lacks scope %s", [scope])} |
	some scope in definition.required_scopes
	not scope in request.scopes
]

idempotency_key_required := [{"code": "IDEMPOTENCY_KEY_REQUIRED", "message": "this capability requires an idempotency_key"} |
	request.idempotency_key == ""
	definition.idempotency_key == "required"
]

# workflow_not_allowed: the capability lists its workflows and the request's
# (absent: "") is not one of them. allowed is bound first: `not x in <undefined>`
# holds in rego-cpp but not in OPA.
workflow_not_allowed := [{"code": "WORKFLOW_NOT_ALLOWED", "message": "this capability is not allowed outside its workflows"} |
	allowed := definition.workflows
	workflow := request.workflow
	not workflow in allowed
]

deny contains r if some r in deny_list

# approval_list: the approval reasons in a fixed order (see
# conditions.approval_list).
approval_list := conditions.approval_list(definition, request.parameters) if known

else := []

approval_reasons contains r if some r in approval_list

# Settings with their defaults. `x := definition.k` is cheaper in rego-cpp than
# object.get(definition, k, default), and is undefined where object.get would
# be (for an undefined or false definition), so else supplies the default.
class := c if {
	c := definition.class
} else := "write"

enforcement := e if {
	e := definition.enforcement
} else := "enforce"

obligations := o if {
	o := definition.obligations
} else := []

mask := m if {
	m := definition.mask
} else := []

approval := definition.approval

# audit_required: the capability is marked audit_required: true.
audit_required if definition.audit_required == true
