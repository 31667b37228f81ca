# METADATA
# title: Workflow rules
# description: |
#   Rules over data.capgate.workflows[input.run.workflow]; a request naming no
#   workflow, or one the bundle does not define, gets none of these rules.
#     run_limits   {max_tool_calls, budget_usd_micros, budget_tokens}: per-run
#                  budgets, enforced by the sidecar in Redis (scope "run")
#     require, deny_if, requires_approval_if, requires_approval: see conditions
#     approval     {approver_roles, min_approvals, ttl_seconds}
#     obligations  [{type, parameters}]
package capgate.lib.workflow

import data.capgate.lib.conditions
import data.capgate.lib.request

definition := data.capgate.workflows[request.workflow]

# Names in bundle data (the seeds' vocabulary) -> policy-result budget fields.
run_limit_fields := {
	"max_tool_calls": "limit_calls",
	"budget_usd_micros": "limit_usd_micros",
	"budget_tokens": "limit_tokens",
}

deny contains r if {
	some r in conditions.deny_reasons(definition, request.parameters)
}

deny contains {"code": "RUN_ID_REQUIRED", "message": "this workflow has run limits; run.run_id is required"} if {
	definition.run_limits
	request.run_id == ""
}

approval_reasons contains r if {
	some r in conditions.approval_reasons(definition, request.parameters)
}

budgets := [object.union({"scope": "run"}, {field: limit |
	some name, limit in definition.run_limits
	field := run_limit_fields[name]
})] if {
	definition.run_limits
} else := []

obligations := object.get(definition, "obligations", []) if definition

else := []

approval := definition.approval
