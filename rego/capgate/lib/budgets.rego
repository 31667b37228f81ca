# METADATA
# title: Budget, rate-limit and reservation rules
# description: |
#   The spend limits, rate limits and reservation TTL the sidecar enforces,
#   from bundle data:
#     data.capgate.tenants[input.tenant_id]  {budgets, rate_limits}
#     data.capgate.tenant_defaults           {budgets, rate_limits}, for a
#         tenant not listed under tenants (a listed tenant gets only its own
#         entry, never the defaults)
#     data.capgate.capabilities[input.capability]  {budgets, rate_limits,
#         reservation_ttl_seconds}; its budgets get scope "capability"
#     data.capgate.workflows[input.run.workflow]  {reservation_ttl_seconds};
#         its run_limits become the run budget (see capgate.lib.workflow)
#   Entries are copied as written (only a capability budget's scope is set);
#   the sidecar validates them and denies POLICY_ERROR on a malformed one, so
#   a malformed value is passed on, never dropped.
#   Lists are arrays in a fixed order, not sets: rego-cpp builds sets of
#   objects slowly and iterates them in another order than OPA.
package capgate.lib.budgets

import data.capgate.lib.capability
import data.capgate.lib.lookup
import data.capgate.lib.workflow

# tenant: the tenant's entry, or the defaults for a tenant not listed
# (undefined when neither is in the data). With many tenants listed, the
# entry is read through the embedded engine's index (capgate.lib.lookup), so
# an unlisted tenant costs rego-cpp the same with 32 tenants listed or 10,000.
# For rego-cpp, a missing path is a slow lookup: package
# capgate.tenant_defaults is declared (empty), and the sidecar adds
# capgate.tenants = {} to bundle data that has none.
tenant := t if {
	t := lookup.entry("tenants", input.tenant_id)
} else := t if {
	not data.capgate_index.indexed.tenants
	t := data.capgate.tenants[input.tenant_id]
} else := data.capgate.tenant_defaults

# budgets: the run budget (from the workflow's run_limits), the tenant entry's
# budgets (scopes tenant and principal), then the capability's. The first body
# is the common case, no tenant or capability budgets (absent or false): it
# only tests for them, which keeps it cheap in rego-cpp.
budgets := workflow.budgets if {
	not tenant.budgets
	not capability.definition.budgets
} else := [b |
	some list in [workflow.budgets, tenant_budgets, capability_budgets]
	some b in list
]

# rate_limits: the tenant entry's, then the capability's.
rate_limits := [] if {
	not tenant.rate_limits
	not capability.definition.rate_limits
} else := [r |
	some list in [tenant_rate_limits, capability_rate_limits]
	some r in list
]

# reservation_ttl_seconds: the capability's, else the workflow's, else
# undefined (the sidecar's default applies).
reservation_ttl_seconds := t if {
	t := capability.definition.reservation_ttl_seconds
} else := t if {
	t := workflow.definition.reservation_ttl_seconds
}

tenant_budgets := as_list(b) if {
	b := tenant.budgets
} else := []

tenant_rate_limits := as_list(r) if {
	r := tenant.rate_limits
} else := []

# capability_budgets: the capability's budgets, each with scope "capability"
# (a scope written in the data is replaced).
capability_budgets := [capability_budget(b) | some b in as_list(written)] if {
	written := capability.definition.budgets
} else := []

capability_budget(b) := object.union(b, {"scope": "capability"}) if {
	is_object(b)
} else := b

capability_rate_limits := as_list(r) if {
	r := capability.definition.rate_limits
} else := []

# as_list(x): x if it is an array, [] if it is false (as if absent, as the
# common-case tests in budgets and rate_limits take it), else [x]. A malformed
# value (a string, say, where a list belongs) then reaches the sidecar, which
# rejects the result (POLICY_ERROR), instead of being dropped without a word.
as_list(x) := x if {
	is_array(x)
} else := [] if {
	x == false
} else := [x]
