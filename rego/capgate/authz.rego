# METADATA
# title: capgate authorization entrypoint
# description: |
#   data.capgate.authz.decision is the policy result the sidecar reads
#   (DESIGN §5): effect, reasons, obligations, approval, budgets,
#   rate_limits, reservation_ttl_seconds (when set), class, enforcement,
#   log.mask and log.audit_required (when set),
#   log.mask. Budgets, rate limits and the TTL come from capgate.lib.budgets.
#   Precedence: deny > require_approval > allow, except that a human approval
#   the sidecar verified and the policy accepts (`approved`) turns what would
#   be require_approval into allow; deny still wins over it. Bundles extend it
#   without editing this file by defining data.capgate.custom.deny /
#   .approval_reasons (sets of {code, message}).
#
#   Performance (rego-cpp, the sidecar's engine): reasons are built as arrays,
#   not sets. rego-cpp builds sets of objects slowly (it serializes every
#   element to compare it), and iterates them in a different order than OPA.
package capgate.authz

import data.capgate.lib.budgets
import data.capgate.lib.capability
import data.capgate.lib.workflow

default_approval := {"approver_roles": ["approver"], "min_approvals": 1, "ttl_seconds": 900}

# deny_list / approval_list: every reason, in a fixed order that does not
# depend on the engine: the capability's (see capability.deny_list), then the
# workflow's, then data.capgate.custom's, sorted by code and message. A reason
# may appear twice here (the same condition in the capability and the
# workflow, say); reasons lists it once.
deny_list := [r |
	some list in [capability.deny_list, workflow.deny_list, custom_deny]
	some r in list
]

approval_list := [r |
	some list in [capability.approval_list, workflow.approval_list, custom_approval]
	some r in list
]

custom_deny := sorted_reasons(custom) if {
	custom := data.capgate.custom.deny
} else := []

custom_approval := sorted_reasons(custom) if {
	custom := data.capgate.custom.approval_reasons
} else := []

# sorted_reasons(reasons): reasons in the order of their code, then message
# (a custom rule's set has no order of its own that both engines share).
# The sort keys are hex-encoded: rego-cpp compares strings in their quoted
# JSON form, which puts "a b" before "a", while hex digits compare alike in
# both engines. (rego-cpp hex-encodes a string's escaped form, so strings with
# `"`, `\` or control characters can still sort differently.) A reason without
# a string code and message has no key and is left out, as listed() leaves it
# out.
sorted_reasons(reasons) := [r |
	some key in sort({reason_key(r) | some r in reasons})
	some r in reasons
	reason_key(r) == key
]

reason_key(r) := concat(".", [hex.encode(r.code), hex.encode(r.message)])

# effect: tests each source of reasons for a first element, in turn, rather
# than joining them first. A call the policy would send for approval is
# allowed when it carries an approval the policy accepts (`approved`); a deny
# reason still wins over an approval.
effect := "deny" if {
	some _ in capability.deny_list
} else := "deny" if {
	some _ in workflow.deny_list
} else := "deny" if {
	some _ in data.capgate.custom.deny
} else := "allow" if {
	approved
} else := "require_approval" if {
	some _ in capability.approval_list
} else := "require_approval" if {
	some _ in workflow.approval_list
} else := "require_approval" if {
	some _ in data.capgate.custom.approval_reasons
} else := "allow"

reasons := listed(deny_list) if {
	effect == "deny"
} else := listed(approval_list) if {
	effect == "require_approval"
} else := []

# listed(list): the reasons of list, each once, in list order. A reason whose
# code or message is not a string is left out (it still decides the effect),
# as the library has always done.
listed(list) := [r |
	some i
	r := list[i]
	is_string(r.code)
	is_string(r.message)
	not earlier(list, i, r)
]

earlier(list, i, r) if {
	some j
	list[j] == r
	j < i
}

# deny / approval_reasons: the same reasons as sets.
deny contains r if some r in deny_list

approval_reasons contains r if some r in approval_list

# The capability's approval settings win over the workflow's.
approval := object.union(default_approval, capability.approval) if {
	capability.approval
} else := object.union(default_approval, workflow.approval) if {
	workflow.approval
} else := default_approval

# approved: the request carries a human approval (input.approval) that meets
# this policy's own current requirement, the `approval` rule above: at least
# approval.min_approvals distinct approvers, each holding at least one of
# approval.approver_roles. The sidecar puts input.approval in the input only
# once it has verified the approval (this tenant, state approved, unexpired,
# unused, bound to the same principal, capability, tool and canonical
# parameters), so the policy only counts it. The roles and count the approval
# record carries are ignored: the bundle's current requirement wins, so a
# bundle that raises min_approvals or narrows approver_roles invalidates
# approvals granted under the old rule. At least one approver is needed
# whatever min_approvals says (a malformed min_approvals < 1 is a
# POLICY_ERROR in the sidecar anyway).
approved if {
	input.approval.state == "approved"
	required := approval.min_approvals
	is_number(required)
	n := count(qualified_approvers)
	n >= required
	n >= 1
}

# qualified_approvers: the principal ids of the approvers holding one of the
# policy's approver roles, each once (a set of strings: an approver listed
# twice counts once; strings, not objects, so cheap in rego-cpp). roles is
# bound and checked before `in`, the library's pattern (rego-cpp and OPA
# disagree on `not x in <undefined>`).
qualified_approvers contains id if {
	roles := approval.approver_roles
	is_array(roles)
	some a in input.approval.approvers
	id := a.principal_id
	is_string(id)
	id != ""
	some role in a.roles
	role in roles
}

# decision: the policy result. reservation_ttl_seconds is present only when
# the capability or the workflow sets one.
decision := object.union(result, {"reservation_ttl_seconds": ttl}) if {
	ttl := budgets.reservation_ttl_seconds
} else := result

result := {
	"effect": effect,
	"reasons": reasons,
	"obligations": array.concat(capability.obligations, workflow.obligations),
	"approval": approval,
	"budgets": budgets.budgets,
	"rate_limits": budgets.rate_limits,
	"class": capability.class,
	"enforcement": capability.enforcement,
	"log": log_settings,
}

# log_settings: the decision log's settings for this capability; audit_required
# appears only when the capability sets it.
log_settings := {"mask": capability.mask, "audit_required": true} if {
	capability.audit_required
} else := {"mask": capability.mask}
