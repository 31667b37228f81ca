package capgate.lib.budgets_test

import data.capgate.authz
import data.capgate.lib.budgets

tenants := {
	"acme": {
		"budgets": [
			{"scope": "tenant", "window": "30d", "limit_usd_micros": 10000000},
			{"scope": "principal", "window": "1d", "limit_calls": 1000},
		],
		"rate_limits": [{"key": "principal", "limit": 60, "period_seconds": 60, "burst": 10}],
	},
	"quiet": {"rate_limits": [{"key": "tenant", "limit": 5, "period_seconds": 1}]},
}

tenant_defaults := {
	"budgets": [{"scope": "tenant", "window": "1d", "limit_usd_micros": 1000000}],
	"rate_limits": [{"key": "principal+capability", "limit": 30, "period_seconds": 60}],
}

capabilities := {
	"issue_refund": {
		"tools": ["payments.create_refund"],
		"workflows": ["refund_request"],
		"budgets": [
			{"window": "1d", "limit_usd_micros": 5000000},
			{"scope": "capability", "window": "1h", "limit_calls": 100},
		],
		"rate_limits": [{"key": "principal", "limit": 10, "period_seconds": 60}],
		"reservation_ttl_seconds": 300,
	},
	"lookup": {"tools": ["crm.get_customer"], "class": "read"},
}

workflows := {
	"refund_request": {
		"run_limits": {"max_tool_calls": 5, "budget_usd_micros": 200000},
		"reservation_ttl_seconds": 600,
	},
	"triage": {},
}

refund := {
	"tenant_id": "acme",
	"capability": "issue_refund",
	"tool": "payments.create_refund",
	"principal": {"id": "refund-agent"},
	"run": {"run_id": "run-1", "workflow": "refund_request"},
}

lookup := {
	"tenant_id": "acme",
	"capability": "lookup",
	"tool": "crm.get_customer",
	"principal": {"id": "support-agent"},
	"run": {"run_id": "run-2", "workflow": "triage"},
}

# req with tenant_id t.
as_tenant(req, t) := object.union(req, {"tenant_id": t})

run_budget := {"scope": "run", "limit_calls": 5, "limit_usd_micros": 200000}

refund_capability_budgets := [
	{"scope": "capability", "window": "1d", "limit_usd_micros": 5000000},
	{"scope": "capability", "window": "1h", "limit_calls": 100},
]

refund_capability_rate_limits := [{"key": "principal", "limit": 10, "period_seconds": 60}]

# decide(req): the decision with every kind of limit in the data.
decide(req) := d if {
	d := authz.decision with input as req
		with data.capgate.tenants as tenants
		with data.capgate.tenant_defaults as tenant_defaults
		with data.capgate.capabilities as capabilities
		with data.capgate.workflows as workflows
}

test_listed_tenant if {
	d := decide(refund)
	d.effect == "allow"
	d.budgets == array.concat(
		array.concat([run_budget], tenants.acme.budgets),
		refund_capability_budgets,
	)
	d.rate_limits == array.concat(tenants.acme.rate_limits, refund_capability_rate_limits)
}

test_listed_tenant_only_its_own_entry if {
	d := decide(as_tenant(lookup, "acme"))
	d.budgets == tenants.acme.budgets
	d.rate_limits == tenants.acme.rate_limits
}

test_listed_tenant_does_not_get_defaults if {
	# "quiet" sets rate_limits but no budgets: it gets no default budgets.
	d := decide(as_tenant(lookup, "quiet"))
	d.budgets == []
	d.rate_limits == tenants.quiet.rate_limits
}

test_listed_tenant_with_empty_entry_gets_nothing if {
	d := authz.decision with input as lookup
		with data.capgate.tenants as {"acme": {}}
		with data.capgate.tenant_defaults as tenant_defaults
		with data.capgate.capabilities as capabilities
		with data.capgate.workflows as workflows
	d.budgets == []
	d.rate_limits == []
}

test_unlisted_tenant_gets_defaults if {
	d := decide(as_tenant(refund, "globex"))
	d.budgets == array.concat(
		array.concat([run_budget], tenant_defaults.budgets),
		refund_capability_budgets,
	)
	d.rate_limits == array.concat(tenant_defaults.rate_limits, refund_capability_rate_limits)
}

test_request_without_tenant_id_gets_defaults if {
	d := decide(object.remove(lookup, ["tenant_id"]))
	d.budgets == tenant_defaults.budgets
	d.rate_limits == tenant_defaults.rate_limits
}

test_defaults_without_tenants if {
	d := authz.decision with input as lookup
		with data.capgate.tenant_defaults as tenant_defaults
		with data.capgate.capabilities as capabilities
		with data.capgate.workflows as workflows
	d.budgets == tenant_defaults.budgets
	d.rate_limits == tenant_defaults.rate_limits
}

test_unlisted_tenant_without_defaults if {
	d := authz.decision with input as as_tenant(lookup, "globex")
		with data.capgate.tenants as tenants
		with data.capgate.capabilities as capabilities
		with data.capgate.workflows as workflows
	d.budgets == []
	d.rate_limits == []
}

test_capability_budgets_get_scope_capability if {
	b := budgets.capability_budgets with input as refund with data.capgate.capabilities as capabilities
	b == refund_capability_budgets
}

test_capability_budget_scope_is_replaced if {
	caps := {"c": {"budgets": [{"scope": "tenant", "window": "1d", "limit_calls": 1}]}}
	b := budgets.capability_budgets with input as {"capability": "c"} with data.capgate.capabilities as caps
	b == [{"scope": "capability", "window": "1d", "limit_calls": 1}]
}

test_capability_limits_without_tenants_data if {
	d := authz.decision with input as refund
		with data.capgate.capabilities as capabilities
		with data.capgate.workflows as workflows
	d.budgets == array.concat([run_budget], refund_capability_budgets)
	d.rate_limits == refund_capability_rate_limits
}

test_rate_limits_from_tenant_and_capability if {
	r := budgets.rate_limits with input as as_tenant(refund, "quiet")
		with data.capgate.tenants as tenants
		with data.capgate.capabilities as capabilities
	r == [
		{"key": "tenant", "limit": 5, "period_seconds": 1},
		{"key": "principal", "limit": 10, "period_seconds": 60},
	]
}

test_limits_appear_on_deny if {
	d := decide(object.remove(refund, ["run"]))
	d.effect == "deny"
	d.budgets == array.concat(tenants.acme.budgets, refund_capability_budgets)
	d.rate_limits == array.concat(tenants.acme.rate_limits, refund_capability_rate_limits)
}

test_unknown_capability_gets_tenant_limits_only if {
	d := decide(object.union(refund, {"capability": "wire_transfer"}))
	d.effect == "deny"
	d.budgets == array.concat([run_budget], tenants.acme.budgets)
	d.rate_limits == tenants.acme.rate_limits
	d.reservation_ttl_seconds == 600 # the workflow's
}

# reservation_ttl_seconds: capability > workflow > absent.

test_ttl_from_capability if {
	decide(refund).reservation_ttl_seconds == 300
}

test_ttl_from_workflow_when_capability_sets_none if {
	caps := json.remove(capabilities, ["issue_refund/reservation_ttl_seconds"])
	d := authz.decision with input as refund
		with data.capgate.capabilities as caps
		with data.capgate.workflows as workflows
	d.reservation_ttl_seconds == 600
}

test_ttl_absent_when_neither_sets_one if {
	d := decide(lookup)
	not "reservation_ttl_seconds" in object.keys(d)
	not budgets.reservation_ttl_seconds with input as lookup
		with data.capgate.capabilities as capabilities
		with data.capgate.workflows as workflows
}

test_ttl_absent_outside_the_workflow if {
	caps := json.remove(capabilities, ["issue_refund/reservation_ttl_seconds"])
	d := authz.decision with input as object.remove(refund, ["run"])
		with data.capgate.capabilities as caps
		with data.capgate.workflows as workflows
	not "reservation_ttl_seconds" in object.keys(d)
}

# No tenants, defaults or limits in the data at all: only the run budget.

test_no_tenants_data_at_all if {
	d := authz.decision with input as refund
		with data.capgate.capabilities as {"issue_refund": {"tools": ["payments.create_refund"]}}
		with data.capgate.workflows as {"refund_request": {"run_limits": {"max_tool_calls": 5}}}
	d.effect == "allow"
	d.budgets == [{"scope": "run", "limit_calls": 5}]
	d.rate_limits == []
	not "reservation_ttl_seconds" in object.keys(d)
}

test_no_data_at_all if {
	budgets.budgets == [] with input as refund
	budgets.rate_limits == [] with input as refund
	not budgets.reservation_ttl_seconds with input as refund
}

# A malformed list is passed on for the sidecar to reject, never dropped.

test_malformed_values_are_passed_on if {
	d := authz.decision with input as lookup
		with data.capgate.tenants as {"acme": {"budgets": "x", "rate_limits": {"key": "tenant", "limit": 1, "period_seconds": 1}}}
		with data.capgate.capabilities as {"lookup": {"tools": ["crm.get_customer"], "budgets": [5], "rate_limits": "fast"}}
	d.budgets == ["x", 5]
	d.rate_limits == [{"key": "tenant", "limit": 1, "period_seconds": 1}, "fast"]
}

test_false_lists_count_as_absent if {
	d := authz.decision with input as lookup
		with data.capgate.tenants as {"acme": {"budgets": false, "rate_limits": false}}
		with data.capgate.capabilities as {"lookup": {"tools": ["crm.get_customer"], "budgets": [{"window": "1d", "limit_calls": 3}]}}
	d.budgets == [{"scope": "capability", "window": "1d", "limit_calls": 3}]
	d.rate_limits == []
}
