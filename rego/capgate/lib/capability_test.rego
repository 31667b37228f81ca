package capgate.lib.capability_test

import data.capgate.lib.capability

capabilities := {
	"refund": {
		"tools": ["payments.create_refund"],
		"required_scopes": ["refunds:write", "payments:read"],
		"idempotency_key": "required",
		"require": [
			{"param": "amount_usd", "op": "gt", "value": 0, "code": "AMOUNT_INVALID", "message": "positive"},
			{"param": "amount_usd", "op": "lte", "value": 200, "code": "AMOUNT_OVER_LIMIT", "message": "max 200"},
		],
		"requires_approval_if": [{"param": "amount_usd", "op": "gt", "value": 50, "code": "OVER_50", "message": "over 50"}],
		"approval": {"approver_roles": ["refund-approver"], "min_approvals": 2},
		"obligations": [{"type": "audit", "parameters": {"retention_days": 365}}],
		"mask": ["parameters.card_number"],
		"class": "write",
		"enforcement": "shadow",
	},
	"lookup": {"tools": ["crm.get_customer"], "class": "read"},
}

# A request the "refund" capability allows without approval.
refund := {
	"tenant_id": "t1",
	"capability": "refund",
	"tool": "payments.create_refund",
	"principal": {"id": "refund-agent", "scopes": ["payments:read", "refunds:write"]},
	"idempotency_key": "k-1",
	"parameters": {"amount_usd": 30},
}

# refund with field k replaced by v.
refund_with(k, v) := object.union(object.remove(refund, [k]), {k: v})

deny_codes(req) := codes if {
	codes := {r.code | some r in capability.deny} with input as req
		with data.capgate.capabilities as capabilities
}

approval_codes(req) := codes if {
	codes := {r.code | some r in capability.approval_reasons} with input as req
		with data.capgate.capabilities as capabilities
}

test_allowed_request_has_no_reasons if {
	deny_codes(refund) == set()
	approval_codes(refund) == set()
}

test_unknown_capability if {
	deny_codes(refund_with("capability", "refund_v2")) == {"UNKNOWN_CAPABILITY"}
}

test_no_capabilities_data_at_all if {
	codes := {r.code | some r in capability.deny} with input as refund
	codes == {"UNKNOWN_CAPABILITY"}
}

test_tool_not_covered if {
	deny_codes(refund_with("tool", "payments.void")) == {"TOOL_NOT_COVERED"}
}

test_tool_absent_is_not_covered if {
	deny_codes(object.remove(refund, ["tool"])) == {"TOOL_NOT_COVERED"}
}

test_capability_without_tools_covers_nothing if {
	codes := {r.code | some r in capability.deny} with input as {"capability": "c", "tool": "t", "principal": {"id": "a"}}
		with data.capgate.capabilities as {"c": {}}
	codes == {"TOOL_NOT_COVERED"}
}

test_missing_scope if {
	deny_codes(refund_with("principal", {"id": "refund-agent", "scopes": ["refunds:write"]})) == {"MISSING_SCOPE"}
}

test_missing_scope_message_names_the_scope if {
	reasons := capability.deny with input as refund_with("principal", {"id": "refund-agent", "scopes": ["refunds:write"]})
		with data.capgate.capabilities as capabilities
	reasons == {{"code": "MISSING_SCOPE", "message": "the principal lacks scope payments:read"}}
}

test_scopes_absent if {
	# proto3 JSON: a principal with no scopes has no "scopes" key.
	deny_codes(refund_with("principal", {"id": "refund-agent"})) == {"MISSING_SCOPE"}
	count(capability.deny) == 2 with input as refund_with("principal", {"id": "refund-agent"})
		with data.capgate.capabilities as capabilities
}

test_idempotency_key_required_and_absent if {
	deny_codes(object.remove(refund, ["idempotency_key"])) == {"IDEMPOTENCY_KEY_REQUIRED"}
}

test_idempotency_key_optional if {
	codes := {r.code | some r in capability.deny} with input as {"capability": "lookup", "tool": "crm.get_customer", "principal": {"id": "a"}}
		with data.capgate.capabilities as capabilities
	codes == set()
}

test_require_violated if {
	deny_codes(refund_with("parameters", {"amount_usd": 200.01})) == {"AMOUNT_OVER_LIMIT"}
	deny_codes(refund_with("parameters", {"amount_usd": 0})) == {"AMOUNT_INVALID"}
}

test_parameters_absent_fail_closed if {
	# proto3 JSON: empty parameters are absent from the input.
	deny_codes(object.remove(refund, ["parameters"])) == {"AMOUNT_INVALID", "AMOUNT_OVER_LIMIT"}
}

test_parameter_wrong_type_fails_closed if {
	deny_codes(refund_with("parameters", {"amount_usd": "30"})) == {"AMOUNT_INVALID", "AMOUNT_OVER_LIMIT"}
}

test_requires_approval_if if {
	approval_codes(refund_with("parameters", {"amount_usd": 60})) == {"OVER_50"}
	deny_codes(refund_with("parameters", {"amount_usd": 60})) == set()
	approval_codes(refund_with("parameters", {"amount_usd": 50})) == set()
}

test_unknown_capability_has_no_approval_reasons if {
	approval_codes(refund_with("capability", "nope")) == set()
}

test_settings_of_a_known_capability if {
	capability.class == "write" with input as refund with data.capgate.capabilities as capabilities
	capability.enforcement == "shadow" with input as refund with data.capgate.capabilities as capabilities
	capability.obligations == [{"type": "audit", "parameters": {"retention_days": 365}}] with input as refund
		with data.capgate.capabilities as capabilities
	capability.mask == ["parameters.card_number"] with input as refund with data.capgate.capabilities as capabilities
	capability.approval == {"approver_roles": ["refund-approver"], "min_approvals": 2} with input as refund
		with data.capgate.capabilities as capabilities
}

test_settings_default if {
	lookup := {"capability": "lookup", "tool": "crm.get_customer", "principal": {"id": "a"}}
	capability.class == "read" with input as lookup with data.capgate.capabilities as capabilities
	capability.enforcement == "enforce" with input as lookup with data.capgate.capabilities as capabilities
	capability.obligations == [] with input as lookup with data.capgate.capabilities as capabilities
	capability.mask == [] with input as lookup with data.capgate.capabilities as capabilities
	not capability.approval with input as lookup with data.capgate.capabilities as capabilities
}

test_settings_of_an_unknown_capability if {
	capability.class == "write" with input as refund_with("capability", "nope") with data.capgate.capabilities as capabilities
	capability.enforcement == "enforce" with input as refund_with("capability", "nope")
		with data.capgate.capabilities as capabilities
	capability.obligations == [] with input as refund_with("capability", "nope")
		with data.capgate.capabilities as capabilities
	capability.mask == [] with input as refund_with("capability", "nope") with data.capgate.capabilities as capabilities
}

test_capability_defined_as_false_is_unknown if {
	codes := {r.code | some r in capability.deny} with input as refund_with("capability", "off")
		with data.capgate.capabilities as {"off": false}
	codes == {"UNKNOWN_CAPABILITY"}
}

workflow_caps := {"refund": {"tools": ["t"], "workflows": ["refund_request"]}}

test_workflow_allowlist_denies_a_request_without_workflow if {
	codes := {r.code | some r in capability.deny} with data.capgate.capabilities as workflow_caps
		with input as {"capability": "refund", "tool": "t", "principal": {"id": "a"}}
	codes == {"WORKFLOW_NOT_ALLOWED"}
}

test_workflow_allowlist_denies_another_workflow if {
	codes := {r.code | some r in capability.deny} with data.capgate.capabilities as workflow_caps
		with input as {"capability": "refund", "tool": "t", "principal": {"id": "a"}, "run": {"workflow": "other"}}
	codes == {"WORKFLOW_NOT_ALLOWED"}
}

test_workflow_allowlist_allows_its_workflow if {
	count(capability.deny) == 0 with data.capgate.capabilities as workflow_caps
		with input as {"capability": "refund", "tool": "t", "principal": {"id": "a"}, "run": {"workflow": "refund_request"}}
}

test_no_workflow_allowlist_allows_any_workflow if {
	count(capability.deny) == 0 with data.capgate.capabilities as {"c": {"tools": ["t"]}}
		with input as {"capability": "c", "tool": "t", "principal": {"id": "a"}, "run": {"workflow": "x"}}
}
