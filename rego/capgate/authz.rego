# METADATA
# title: capgate authorization entrypoint
# description: |
#   data.capgate.authz.decision is the policy result the sidecar reads
#   (DESIGN §5): effect, reasons, obligations, approval, budgets,
#   rate_limits, class, enforcement, log.mask. Precedence:
#   deny > require_approval > allow. Bundles extend it without editing this
#   file by defining data.capgate.custom.deny / .approval_reasons (sets of
#   {code, message}).
package capgate.authz

import data.capgate.lib.capability
import data.capgate.lib.workflow

default_approval := {"approver_roles": ["approver"], "min_approvals": 1, "ttl_seconds": 900}

deny contains r if some r in capability.deny

deny contains r if some r in workflow.deny

deny contains r if some r in data.capgate.custom.deny

approval_reasons contains r if some r in capability.approval_reasons

approval_reasons contains r if some r in workflow.approval_reasons

approval_reasons contains r if some r in data.capgate.custom.approval_reasons

effect := "deny" if {
	count(deny) > 0
} else := "require_approval" if {
	count(approval_reasons) > 0
} else := "allow"

reasons := ordered(deny) if {
	effect == "deny"
} else := ordered(approval_reasons) if {
	effect == "require_approval"
} else := []

# ordered(reasons) sorts a set of reasons by code, then message: set iteration
# order differs between engines, a sorted array does not.
ordered(reasons) := [r |
	some key in sort({sort_key(r) | some r in reasons})
	some r in reasons
	sort_key(r) == key
]

sort_key(r) := concat("\t", [r.code, r.message])

# The capability's approval settings win over the workflow's.
approval := object.union(default_approval, capability.approval) if {
	capability.approval
} else := object.union(default_approval, workflow.approval) if {
	workflow.approval
} else := default_approval

decision := {
	"effect": effect,
	"reasons": reasons,
	"obligations": array.concat(capability.obligations, workflow.obligations),
	"approval": approval,
	"budgets": workflow.budgets,
	"rate_limits": [],
	"class": capability.class,
	"enforcement": capability.enforcement,
	"log": {"mask": capability.mask},
}
