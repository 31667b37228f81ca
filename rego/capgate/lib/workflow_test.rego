package capgate.lib.workflow_test

import data.capgate.lib.workflow

workflows := {
	"refund_request": {
		"run_limits": {"max_tool_calls": 5, "budget_usd_micros": 200000},
		"requires_approval_if": [
			{"param": "amount_usd", "op": "gte", "value": 50, "code": "REFUND_AMOUNT_NEEDS_APPROVAL", "message": "m"},
			{"param": "customer_tier", "op": "in", "value": ["enterprise"], "code": "ENTERPRISE_CUSTOMER", "message": "m"},
		],
		"deny_if": [{
			"param": "reason", "op": "contains_any", "value": ["chargeback retaliation", "fraud"],
			"code": "REASON_NOT_ALLOWED", "message": "m",
		}],
		"obligations": [{"type": "rollback_window", "parameters": {"window_minutes": 30}}],
		"approval": {"approver_roles": ["support-lead"]},
	},
	"triage": {"require": [{"param": "ticket_id", "op": "present", "code": "TICKET_REQUIRED", "message": "m"}]},
	"tokens_only": {"run_limits": {"budget_tokens": 10000, "max_wall_seconds": 60}},
}

refund_run := {
	"capability": "issue_refund",
	"tool": "payments.create_refund",
	"principal": {"id": "refund-agent"},
	"run": {"run_id": "run-1", "workflow": "refund_request"},
	"parameters": {"amount_usd": 30, "customer_tier": "standard", "reason": "damaged item"},
}

# refund_run with parameters p.
refund_params(p) := object.union(object.remove(refund_run, ["parameters"]), {"parameters": p})

deny_codes(req) := codes if {
	codes := {r.code | some r in workflow.deny} with input as req
		with data.capgate.workflows as workflows
}

approval_codes(req) := codes if {
	codes := {r.code | some r in workflow.approval_reasons} with input as req
		with data.capgate.workflows as workflows
}

test_run_limits_become_a_run_budget if {
	b := workflow.budgets with input as refund_run with data.capgate.workflows as workflows
	b == [{"scope": "run", "limit_calls": 5, "limit_usd_micros": 200000}]
}

test_run_limits_map_tokens_and_ignore_unknown_keys if {
	req := {"principal": {"id": "a"}, "run": {"run_id": "r", "workflow": "tokens_only"}}
	b := workflow.budgets with input as req with data.capgate.workflows as workflows
	b == [{"scope": "run", "limit_tokens": 10000}]
}

test_no_run_limits_no_budgets if {
	req := {"principal": {"id": "a"}, "run": {"run_id": "r", "workflow": "triage"}, "parameters": {"ticket_id": "T-1"}}
	b := workflow.budgets with input as req with data.capgate.workflows as workflows
	b == []
	deny_codes(req) == set()
}

test_run_id_required if {
	req := object.union(object.remove(refund_run, ["run"]), {"run": {"workflow": "refund_request"}})
	deny_codes(req) == {"RUN_ID_REQUIRED"}
}

test_run_id_not_required_without_run_limits if {
	deny_codes({"principal": {"id": "a"}, "run": {"workflow": "triage"}, "parameters": {"ticket_id": "T-1"}}) == set()
}

test_allowed_run_has_no_reasons if {
	deny_codes(refund_run) == set()
	approval_codes(refund_run) == set()
}

test_deny_if if {
	deny_codes(refund_params({"amount_usd": 30, "reason": "Suspected FRAUD"})) == {"REASON_NOT_ALLOWED"}
}

test_requires_approval_if if {
	approval_codes(refund_params({"amount_usd": 50})) == {"REFUND_AMOUNT_NEEDS_APPROVAL"}
	approval_codes(refund_params({"amount_usd": 10, "customer_tier": "enterprise"})) == {"ENTERPRISE_CUSTOMER"}
	approval_codes(refund_params({"amount_usd": 60, "customer_tier": "enterprise"})) == {
		"REFUND_AMOUNT_NEEDS_APPROVAL",
		"ENTERPRISE_CUSTOMER",
	}
}

test_require_with_parameters_absent if {
	deny_codes({"principal": {"id": "a"}, "run": {"workflow": "triage"}}) == {"TICKET_REQUIRED"}
}

test_no_workflow_no_rules if {
	req := object.remove(refund_run, ["run"])
	deny_codes(req) == set()
	approval_codes(req) == set()
	workflow.budgets == [] with input as req with data.capgate.workflows as workflows
	workflow.obligations == [] with input as req with data.capgate.workflows as workflows
	not workflow.approval with input as req with data.capgate.workflows as workflows
}

test_unknown_workflow_no_rules if {
	req := object.union(object.remove(refund_run, ["run"]), {"run": {"workflow": "nope"}})
	deny_codes(req) == set()
	workflow.budgets == [] with input as req with data.capgate.workflows as workflows
}

test_no_workflows_data_at_all if {
	codes := {r.code | some r in workflow.deny} with input as refund_run
	codes == set()
	workflow.budgets == [] with input as refund_run
}

test_obligations_and_approval if {
	workflow.obligations == [{"type": "rollback_window", "parameters": {"window_minutes": 30}}] with input as refund_run
		with data.capgate.workflows as workflows
	workflow.approval == {"approver_roles": ["support-lead"]} with input as refund_run
		with data.capgate.workflows as workflows
}
