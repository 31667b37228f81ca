package capgate.authz_test

import data.capgate.authz

capabilities := {
	"issue_refund": {
		"class": "write",
		"tools": ["payments.create_refund"],
		"required_scopes": ["refunds:write"],
		"idempotency_key": "required",
		"require": [
			{"param": "amount_usd", "op": "gt", "value": 0, "code": "AMOUNT_INVALID", "message": "positive"},
			{"param": "amount_usd", "op": "lte", "value": 200, "code": "AMOUNT_OVER_LIMIT", "message": "max 200"},
		],
		"requires_approval_if": [{
			"param": "amount_usd", "op": "gt", "value": 50,
			"code": "REFUND_OVER_APPROVAL_THRESHOLD", "message": "over 50",
		}],
		"approval": {"approver_roles": ["refund-approver"], "min_approvals": 2},
		"obligations": [{"type": "audit", "parameters": {"log_payload": true, "retention_days": 365}}],
	},
	"deploy_service": {
		"tools": ["cicd.open_pr", "cicd.trigger_deploy"],
		"required_scopes": ["deploy:write"],
		"requires_approval": true,
		"require": [{"param": "environment", "op": "in", "value": ["staging"], "code": "ENVIRONMENT_NOT_ALLOWED", "message": "m"}],
	},
	"read_ticket": {
		"class": "read",
		"enforcement": "shadow",
		"tools": ["tickets.get"],
		"mask": ["parameters.email"],
	},
}

workflows := {
	"refund_request": {
		"run_limits": {"max_tool_calls": 5, "budget_usd_micros": 200000},
		"requires_approval_if": [{
			"param": "customer_tier", "op": "in", "value": ["enterprise"],
			"code": "ENTERPRISE_CUSTOMER", "message": "m",
		}],
		"deny_if": [{
			"param": "reason", "op": "contains_any", "value": ["fraud"],
			"code": "REASON_NOT_ALLOWED", "message": "m",
		}],
		"obligations": [{"type": "rollback_window", "parameters": {"window_minutes": 30}}],
		"approval": {"approver_roles": ["support-lead"], "ttl_seconds": 300},
	},
}

default_approval := {"approver_roles": ["approver"], "min_approvals": 1, "ttl_seconds": 900}

refund := {
	"tenant_id": "t1",
	"capability": "issue_refund",
	"tool": "payments.create_refund",
	"principal": {"id": "refund-agent", "scopes": ["refunds:write"]},
	"idempotency_key": "k-1",
	"parameters": {"amount_usd": 30},
	"identity": {"method": "insecure"},
	"tenant_mode": "normal",
	"request_time": "2026-01-01T00:00:00Z",
}

# refund with field k replaced by v.
refund_with(k, v) := object.union(object.remove(refund, [k]), {k: v})

in_run := refund_with("run", {"run_id": "run-1", "workflow": "refund_request"})

deploy := {
	"capability": "deploy_service",
	"tool": "cicd.trigger_deploy",
	"principal": {"id": "deploy-agent", "scopes": ["deploy:write"]},
	"parameters": {"environment": "staging"},
}

decide(req) := d if {
	d := authz.decision with input as req
		with data.capgate.capabilities as capabilities
		with data.capgate.workflows as workflows
}

codes(d) := {r.code | some r in d.reasons}

# Effects and reasons

test_allow if {
	d := decide(refund)
	d.effect == "allow"
	d.reasons == []
}

test_allow_full_result if {
	decide(refund) == {
		"effect": "allow",
		"reasons": [],
		"obligations": [{"type": "audit", "parameters": {"log_payload": true, "retention_days": 365}}],
		"approval": {"approver_roles": ["refund-approver"], "min_approvals": 2, "ttl_seconds": 900},
		"budgets": [],
		"rate_limits": [],
		"class": "write",
		"enforcement": "enforce",
		"log": {"mask": []},
	}
}

test_unknown_capability if {
	d := decide(refund_with("capability", "wire_transfer"))
	d.effect == "deny"
	codes(d) == {"UNKNOWN_CAPABILITY"}
	d.class == "write"
	d.enforcement == "enforce"
	d.obligations == []
	d.approval == default_approval
}

test_tool_not_covered if {
	d := decide(refund_with("tool", "payments.void_payment"))
	d.effect == "deny"
	codes(d) == {"TOOL_NOT_COVERED"}
}

test_missing_scope if {
	d := decide(refund_with("principal", {"id": "refund-agent", "scopes": ["refunds:read"]}))
	d.effect == "deny"
	codes(d) == {"MISSING_SCOPE"}
}

test_idempotency_key_required_and_absent if {
	d := decide(object.remove(refund, ["idempotency_key"]))
	d.effect == "deny"
	codes(d) == {"IDEMPOTENCY_KEY_REQUIRED"}
}

test_parameters_absent_fail_closed if {
	d := decide(object.remove(refund, ["parameters"]))
	d.effect == "deny"
	codes(d) == {"AMOUNT_INVALID", "AMOUNT_OVER_LIMIT"}
}

test_require_approval if {
	d := decide(refund_with("parameters", {"amount_usd": 60}))
	d.effect == "require_approval"
	codes(d) == {"REFUND_OVER_APPROVAL_THRESHOLD"}
}

test_deny_over_limit if {
	d := decide(refund_with("parameters", {"amount_usd": 200.01}))
	d.effect == "deny"
	codes(d) == {"AMOUNT_OVER_LIMIT"}
}

test_always_requires_approval if {
	d := decide(deploy)
	d.effect == "require_approval"
	codes(d) == {"APPROVAL_REQUIRED"}
	d.approval == default_approval
}

# Precedence: deny > require_approval > allow

test_deny_beats_require_approval if {
	# requires_approval: true holds, and so does a require violation.
	d := decide(object.union(object.remove(deploy, ["parameters"]), {"parameters": {"environment": "production"}}))
	d.effect == "deny"
	codes(d) == {"ENVIRONMENT_NOT_ALLOWED"}
}

test_deny_reasons_only_when_denied if {
	# Over the approval threshold, but the idempotency key is missing.
	d := decide(object.remove(refund_with("parameters", {"amount_usd": 60}), ["idempotency_key"]))
	d.effect == "deny"
	codes(d) == {"IDEMPOTENCY_KEY_REQUIRED"}
}

test_all_deny_reasons_reported if {
	req := object.remove(refund_with("principal", {"id": "refund-agent"}), ["idempotency_key", "parameters"])
	d := decide(req)
	d.effect == "deny"
	codes(d) == {"MISSING_SCOPE", "IDEMPOTENCY_KEY_REQUIRED", "AMOUNT_INVALID", "AMOUNT_OVER_LIMIT"}
}

test_require_approval_beats_allow if {
	d := decide(object.union(in_run, {"parameters": {"customer_tier": "enterprise"}}))
	d.effect == "require_approval"
	codes(d) == {"ENTERPRISE_CUSTOMER"}
}

test_capability_and_workflow_approval_reasons_combine if {
	d := decide(object.union(in_run, {"parameters": {"amount_usd": 60, "customer_tier": "enterprise"}}))
	d.effect == "require_approval"
	codes(d) == {"REFUND_OVER_APPROVAL_THRESHOLD", "ENTERPRISE_CUSTOMER"}
}

test_workflow_deny_beats_capability_approval if {
	d := decide(object.union(in_run, {"parameters": {"amount_usd": 60, "reason": "Suspected FRAUD"}}))
	d.effect == "deny"
	codes(d) == {"REASON_NOT_ALLOWED"}
}

# Workflows: budgets, run_id, obligations

test_workflow_run_limits_become_budgets if {
	d := decide(in_run)
	d.effect == "allow"
	d.budgets == [{"scope": "run", "limit_calls": 5, "limit_usd_micros": 200000}]
}

test_no_workflow_no_budgets if {
	decide(refund).budgets == []
}

test_workflow_run_limits_without_run_id if {
	d := decide(refund_with("run", {"workflow": "refund_request"}))
	d.effect == "deny"
	codes(d) == {"RUN_ID_REQUIRED"}
}

test_obligations_concatenate if {
	decide(in_run).obligations == [
		{"type": "audit", "parameters": {"log_payload": true, "retention_days": 365}},
		{"type": "rollback_window", "parameters": {"window_minutes": 30}},
	]
}

# Approval settings: capability > workflow > defaults, each over the defaults

test_capability_approval_wins_over_workflow if {
	decide(in_run).approval == {"approver_roles": ["refund-approver"], "min_approvals": 2, "ttl_seconds": 900}
}

test_workflow_approval_when_capability_has_none if {
	req := object.union(deploy, {"run": {"run_id": "run-1", "workflow": "refund_request"}})
	d := decide(req)
	d.effect == "require_approval"
	d.approval == {"approver_roles": ["support-lead"], "min_approvals": 1, "ttl_seconds": 300}
}

test_default_approval if {
	decide(deploy).approval == default_approval
}

# Capability settings in the result

test_audit_required_is_in_the_log_settings_only_when_set if {
	caps := object.union(capabilities, {"issue_refund": object.union(capabilities.issue_refund, {"audit_required": true})})
	d := authz.decision with input as refund with data.capgate.capabilities as caps
	d.log == {"mask": [], "audit_required": true}
	decide(refund).log == {"mask": []}
}

test_class_enforcement_and_mask if {
	d := decide({"capability": "read_ticket", "tool": "tickets.get", "principal": {"id": "a"}})
	d.effect == "allow"
	d.class == "read"
	d.enforcement == "shadow"
	d.log == {"mask": ["parameters.email"]}
}

# Extension points

test_custom_deny if {
	d := authz.decision with input as refund
		with data.capgate.capabilities as capabilities
		with data.capgate.custom.deny as {{"code": "TENANT_FROZEN", "message": "frozen"}}
	d.effect == "deny"
	d.reasons == [{"code": "TENANT_FROZEN", "message": "frozen"}]
}

test_custom_deny_adds_to_library_reasons if {
	d := authz.decision with input as refund_with("tool", "payments.void_payment")
		with data.capgate.capabilities as capabilities
		with data.capgate.custom.deny as {{"code": "TENANT_FROZEN", "message": "frozen"}}
	codes(d) == {"TOOL_NOT_COVERED", "TENANT_FROZEN"}
}

test_custom_approval_reasons if {
	d := authz.decision with input as refund
		with data.capgate.capabilities as capabilities
		with data.capgate.custom.approval_reasons as {{"code": "AFTER_HOURS", "message": "m"}}
	d.effect == "require_approval"
	codes(d) == {"AFTER_HOURS"}
}

test_empty_custom_sets_change_nothing if {
	d := authz.decision with input as refund
		with data.capgate.capabilities as capabilities
		with data.capgate.custom as {"deny": set(), "approval_reasons": set()}
	d.effect == "allow"
}

# Reason order: the same in OPA and rego-cpp. The capability's reasons (its
# checks, then its conditions in list order), then the workflow's, then
# data.capgate.custom's sorted by code and message; each reason once.

test_reasons_in_library_order if {
	req := object.remove(refund_with("principal", {"id": "refund-agent"}), ["idempotency_key", "parameters"])
	[r.code | some r in decide(req).reasons] == ["MISSING_SCOPE", "IDEMPOTENCY_KEY_REQUIRED", "AMOUNT_INVALID", "AMOUNT_OVER_LIMIT"]
}

test_capability_reasons_before_workflow_reasons if {
	d := decide(object.union(in_run, {"parameters": {"amount_usd": 60, "customer_tier": "enterprise"}}))
	d.reasons == [
		{"code": "REFUND_OVER_APPROVAL_THRESHOLD", "message": "over 50"},
		{"code": "ENTERPRISE_CUSTOMER", "message": "m"},
	]
}

test_same_reason_listed_once if {
	d := authz.decision with input as object.union(deploy, {"run": {"run_id": "run-1", "workflow": "w"}})
		with data.capgate.capabilities as capabilities
		with data.capgate.workflows as {"w": {"requires_approval": true}}
	d.effect == "require_approval"
	d.reasons == [{"code": "APPROVAL_REQUIRED", "message": "this capability always requires a human approval"}]
}

test_custom_reasons_sorted_by_code_then_message if {
	d := authz.decision with input as refund
		with data.capgate.capabilities as capabilities
		with data.capgate.custom.deny as {
			{"code": "B", "message": "b"},
			{"code": "AB", "message": "x"},
			{"code": "A", "message": "b"},
			{"code": "A", "message": "a b"},
			{"code": "A", "message": "a"},
		}
	d.reasons == [
		{"code": "A", "message": "a"},
		{"code": "A", "message": "a b"},
		{"code": "A", "message": "b"},
		{"code": "AB", "message": "x"},
		{"code": "B", "message": "b"},
	]
}

test_custom_reasons_after_library_reasons if {
	d := authz.decision with input as refund_with("tool", "payments.void_payment")
		with data.capgate.capabilities as capabilities
		with data.capgate.custom.deny as {{"code": "A_CUSTOM", "message": "m"}, {"code": "TOOL_NOT_COVERED", "message": "this tool is not covered by the capability"}}
	[r.code | some r in d.reasons] == ["TOOL_NOT_COVERED", "A_CUSTOM"]
}

# Human approvals: input.approval, set by the sidecar once it has verified an
# approval, meets the policy's own current requirement (`approved`): the call
# is allowed with no reasons. Deny still wins.

# The default bundle's approval settings: one refund-approver for a refund,
# two release-managers for a deploy (the two-person rule).
approval_capabilities := object.union(capabilities, {
	"issue_refund": {"approval": {"min_approvals": 1}},
	"deploy_service": {"approval": {"approver_roles": ["release-manager"], "min_approvals": 2}},
})

refund_60 := refund_with("parameters", {"amount_usd": 60})

deploy_staging := deploy

deploy_production := object.union(object.remove(deploy, ["parameters"]), {"parameters": {"environment": "production"}})

# approval_fact(approvers): input.approval as the sidecar sets it.
approval_fact(approvers) := {
	"approval_id": "0193a0b0-0000-7000-8000-000000000001",
	"state": "approved",
	"approvers": approvers,
	"approver_roles": ["refund-approver"],
	"min_approvals": 1,
}

bob := {"principal_id": "bob", "roles": ["refund-approver"]}

carol := {"principal_id": "carol", "roles": ["release-manager"]}

dave := {"principal_id": "dave", "roles": ["sre", "release-manager"]}

# with_approval(req, approvers): req carrying an approved approval by approvers.
with_approval(req, approvers) := object.union(req, {"approval": approval_fact(approvers)})

decide_approving(req) := d if {
	d := authz.decision with input as req
		with data.capgate.capabilities as approval_capabilities
		with data.capgate.workflows as workflows
}

test_approval_refund_without_approval_requires_one if {
	d := decide_approving(refund_60)
	d.effect == "require_approval"
	codes(d) == {"REFUND_OVER_APPROVAL_THRESHOLD"}
	d.approval == {"approver_roles": ["refund-approver"], "min_approvals": 1, "ttl_seconds": 900}
}

test_approval_by_refund_approver_allows if {
	d := decide_approving(with_approval(refund_60, [bob]))
	d.effect == "allow"
	d.reasons == []
}

test_approval_result_shape_unchanged if {
	decide_approving(with_approval(refund_60, [bob])) == {
		"effect": "allow",
		"reasons": [],
		"obligations": [{"type": "audit", "parameters": {"log_payload": true, "retention_days": 365}}],
		"approval": {"approver_roles": ["refund-approver"], "min_approvals": 1, "ttl_seconds": 900},
		"budgets": [],
		"rate_limits": [],
		"class": "write",
		"enforcement": "enforce",
		"log": {"mask": []},
	}
}

test_approval_approvers_lacking_the_role_do_not_count if {
	d := decide_approving(with_approval(refund_60, [
		{"principal_id": "eve", "roles": ["support-lead"]},
		{"principal_id": "mallory"},
	]))
	d.effect == "require_approval"
	codes(d) == {"REFUND_OVER_APPROVAL_THRESHOLD"}
}

test_approval_deploy_one_release_manager_is_not_enough if {
	d := decide_approving(with_approval(deploy_staging, [carol]))
	d.effect == "require_approval"
	codes(d) == {"APPROVAL_REQUIRED"}
	d.approval == {"approver_roles": ["release-manager"], "min_approvals": 2, "ttl_seconds": 900}
}

test_approval_deploy_two_release_managers_allow if {
	d := decide_approving(with_approval(deploy_staging, [carol, dave]))
	d.effect == "allow"
	d.reasons == []
}

test_approval_same_approver_listed_twice_counts_once if {
	d := decide_approving(with_approval(deploy_staging, [carol, {"principal_id": "carol", "roles": ["release-manager", "sre"]}]))
	d.effect == "require_approval"
	codes(d) == {"APPROVAL_REQUIRED"}
}

test_approval_only_approvers_with_the_role_count_towards_the_minimum if {
	d := decide_approving(with_approval(deploy_staging, [carol, bob]))
	d.effect == "require_approval"
}

test_approval_not_in_state_approved_requires_approval if {
	every state in ["pending", "rejected", "expired", "consumed", "APPROVED", ""] {
		d := decide_approving(object.union(with_approval(refund_60, [bob]), {"approval": {"state": state}}))
		d.effect == "require_approval"
		codes(d) == {"REFUND_OVER_APPROVAL_THRESHOLD"}
	}
}

test_approval_without_state_requires_approval if {
	d := decide_approving(object.union(refund_60, {"approval": object.remove(approval_fact([bob]), ["state"])}))
	d.effect == "require_approval"
}

test_approval_deny_wins_over_refund_approval if {
	d := decide_approving(with_approval(refund_with("parameters", {"amount_usd": 250}), [bob]))
	d.effect == "deny"
	codes(d) == {"AMOUNT_OVER_LIMIT"}
}

test_approval_deny_wins_over_deploy_approval if {
	d := decide_approving(with_approval(deploy_production, [carol, dave]))
	d.effect == "deny"
	codes(d) == {"ENVIRONMENT_NOT_ALLOWED"}
}

test_approval_custom_deny_wins if {
	d := authz.decision with input as with_approval(refund_60, [bob])
		with data.capgate.capabilities as approval_capabilities
		with data.capgate.custom.deny as {{"code": "TENANT_FROZEN", "message": "frozen"}}
	d.effect == "deny"
	d.reasons == [{"code": "TENANT_FROZEN", "message": "frozen"}]
}

test_approval_covers_custom_approval_reasons if {
	d := authz.decision with input as with_approval(refund, [bob])
		with data.capgate.capabilities as approval_capabilities
		with data.capgate.custom.approval_reasons as {{"code": "AFTER_HOURS", "message": "m"}}
	d.effect == "allow"
	d.reasons == []
}

test_approval_policy_minimum_wins_over_the_record if {
	# The inline issue_refund wants two refund-approvers; the record says one.
	d := decide(with_approval(refund_60, [bob]))
	d.effect == "require_approval"
	d.approval.min_approvals == 2
	decide(with_approval(refund_60, [bob, {"principal_id": "erin", "roles": ["refund-approver"]}])).effect == "allow"
}

test_approval_policy_roles_win_over_the_record if {
	# The record names role "viewer"; the policy wants a refund-approver.
	fact := object.union(approval_fact([{"principal_id": "vic", "roles": ["viewer"]}]), {"approver_roles": ["viewer"]})
	d := decide_approving(object.union(refund_60, {"approval": fact}))
	d.effect == "require_approval"
}

test_approval_workflow_requirement_when_capability_has_none if {
	# deploy_service in the inline data has no approval: the workflow's applies.
	req := object.union(deploy, {"run": {"run_id": "run-1", "workflow": "refund_request"}})
	decide(with_approval(req, [{"principal_id": "lead", "roles": ["support-lead"]}])).effect == "allow"
	decide(with_approval(req, [bob])).effect == "require_approval"
}

test_approval_on_a_call_needing_none_changes_nothing if {
	d := decide_approving(with_approval(refund, [bob]))
	d.effect == "allow"
	d.reasons == []
}

test_approval_with_no_approvers_is_not_approved if {
	req := with_approval(refund_60, [])
	not authz.approved with input as req with data.capgate.capabilities as approval_capabilities
	decide_approving(req).effect == "require_approval"
	decide_approving(object.union(refund_60, {"approval": object.remove(approval_fact([bob]), ["approvers"])})).effect == "require_approval"
}

test_approval_approver_without_principal_id_does_not_count if {
	d := decide_approving(with_approval(refund_60, [{"roles": ["refund-approver"]}, {"principal_id": "", "roles": ["refund-approver"]}]))
	d.effect == "require_approval"
}

test_approval_zero_min_approvals_still_needs_an_approver if {
	caps := object.union(capabilities, {"issue_refund": {"approval": {"min_approvals": 0}}})
	d := authz.decision with input as with_approval(refund_60, [{"principal_id": "eve", "roles": ["support-lead"]}])
		with data.capgate.capabilities as caps
	d.effect == "require_approval"
}

test_approved_rule if {
	authz.approved with input as with_approval(refund_60, [bob]) with data.capgate.capabilities as approval_capabilities
	not authz.approved with input as refund_60 with data.capgate.capabilities as approval_capabilities
}
