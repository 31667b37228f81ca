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
#   The reasons come as arrays in a fixed order (deny_list, approval_list) and
#   as sets (deny, approval_reasons), as in capgate.lib.capability.
package capgate.lib.workflow

import data.capgate.lib.conditions
import data.capgate.lib.lookup
import data.capgate.lib.request

# definition: data.capgate.workflows[request.workflow], read through the
# embedded engine's index when it has one (see capgate.lib.lookup); false when
# the data does not define the workflow, which every rule here takes as
# undefined. Always defined: rego-cpp keeps a rule's value for the rest of the
# query, but evaluates an undefined rule again at every reference (a dozen
# here). (Not wrapped as [definition]: rego-cpp would copy the definition.)
definition := d if {
	d := lookup.entry("workflows", request.workflow)
} else := d if {
	not data.capgate_index.indexed.workflows
	d := data.capgate.workflows[request.workflow]
} else := false

# known: the workflow is defined (and not false). Tested with is_boolean, not
# by comparing the definition with false: rego-cpp compares objects slowly.
known if {
	d := definition
	not is_boolean(d)
} else if {
	definition == true
}

# Names in bundle data (the seeds' vocabulary) -> policy-result budget fields.
run_limit_fields := {
	"max_tool_calls": "limit_calls",
	"budget_usd_micros": "limit_usd_micros",
	"budget_tokens": "limit_tokens",
}

# has_run_limits: run_limits is set (and not false).
has_run_limits if {
	limits := definition.run_limits
	not is_boolean(limits)
} else if {
	definition.run_limits == true
}

# deny_list: the deny reasons in a fixed order: RUN_ID_REQUIRED, then the
# require and deny_if conditions (see conditions.deny_list).
deny_list := [r |
	some list in [run_id_required, conditions.deny_list(definition, request.parameters)]
	some r in list
] if known

else := []

run_id_required := [{"code": "RUN_ID_REQUIRED", "message": "this workflow has run limits; run.run_id is required"} |
	request.run_id == ""
	has_run_limits
]

deny contains r if some r in deny_list

# approval_list: the approval reasons in a fixed order (see
# conditions.approval_list).
approval_list := conditions.approval_list(definition, request.parameters) if known

else := []

approval_reasons contains r if some r in approval_list

budgets := [object.union({"scope": "run"}, {field: limit |
	some name, limit in definition.run_limits
	field := run_limit_fields[name]
})] if {
	has_run_limits
} else := []

obligations := o if {
	o := definition.obligations
} else := []

approval := definition.approval
