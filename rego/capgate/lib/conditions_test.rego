package capgate.lib.conditions_test

import data.capgate.lib.conditions

cond(op, value) := {"param": "p", "op": op, "value": value}

# One condition per op, each of which would hold for some well-typed value.
every_op := [
	cond("eq", "a"),
	cond("neq", "a"),
	cond("gt", 1),
	cond("gte", 1),
	cond("lt", 1),
	cond("lte", 1),
	cond("in", ["a"]),
	cond("not_in", ["a"]),
	cond("contains_any", ["a"]),
	{"param": "p", "op": "present"},
]

# eq / neq

test_eq_holds if conditions.holds(cond("eq", "staging"), {"p": "staging"})

test_eq_does_not_hold if not conditions.holds(cond("eq", "staging"), {"p": "production"})

test_eq_compares_types if not conditions.holds(cond("eq", 1), {"p": "1"})

test_neq_holds if conditions.holds(cond("neq", "production"), {"p": "staging"})

test_neq_does_not_hold if not conditions.holds(cond("neq", "production"), {"p": "production"})

# gt / gte / lt / lte

test_gt_holds if conditions.holds(cond("gt", 50), {"p": 50.01})

test_gt_does_not_hold if not conditions.holds(cond("gt", 50), {"p": 50})

test_gte_holds if conditions.holds(cond("gte", 50), {"p": 50})

test_gte_does_not_hold if not conditions.holds(cond("gte", 50), {"p": 49.99})

test_lt_holds if conditions.holds(cond("lt", 10), {"p": 9})

test_lt_does_not_hold if not conditions.holds(cond("lt", 10), {"p": 10})

test_lte_holds if conditions.holds(cond("lte", 200), {"p": 200})

test_lte_does_not_hold if not conditions.holds(cond("lte", 200), {"p": 200.01})

test_ordering_ops_need_a_number if {
	every op in ["gt", "gte", "lt", "lte"] {
		not conditions.holds(cond(op, 50), {"p": "60"})
		not conditions.holds(cond(op, 50), {"p": null})
		not conditions.holds(cond(op, 50), {"p": [60]})
		not conditions.holds(cond(op, 50), {"p": true})
	}
}

# in / not_in

test_in_holds if conditions.holds(cond("in", ["staging", "dev"]), {"p": "dev"})

test_in_does_not_hold if not conditions.holds(cond("in", ["staging", "dev"]), {"p": "production"})

test_in_compares_types if not conditions.holds(cond("in", [1, 2]), {"p": "1"})

test_not_in_holds if conditions.holds(cond("not_in", ["production"]), {"p": "staging"})

test_not_in_does_not_hold if not conditions.holds(cond("not_in", ["production"]), {"p": "production"})

# contains_any

test_contains_any_holds if conditions.holds(cond("contains_any", ["fraud", "chargeback"]), {"p": "possible fraud"})

test_contains_any_is_case_insensitive if {
	conditions.holds(cond("contains_any", ["fraud"]), {"p": "Suspected FRAUD"})
	conditions.holds(cond("contains_any", ["FrAuD"]), {"p": "fraud"})
}

test_contains_any_does_not_hold if not conditions.holds(cond("contains_any", ["fraud"]), {"p": "damaged item"})

test_contains_any_needs_a_string if {
	not conditions.holds(cond("contains_any", ["1"]), {"p": 1})
	not conditions.holds(cond("contains_any", ["fraud"]), {"p": ["fraud"]})
	not conditions.holds(cond("contains_any", ["null"]), {"p": null})
}

# present

test_present_holds if {
	conditions.holds({"param": "p", "op": "present"}, {"p": "x"})
	conditions.holds({"param": "p", "op": "present"}, {"p": 0})
	conditions.holds({"param": "p", "op": "present"}, {"p": false})
}

test_present_does_not_hold if {
	not conditions.holds({"param": "p", "op": "present"}, {"p": ""})
	not conditions.holds({"param": "p", "op": "present"}, {"p": null})
	not conditions.holds({"param": "p", "op": "present"}, {"q": "x"})
}

# Missing parameters, unknown ops

test_missing_parameter_never_holds if {
	every c in every_op {
		not conditions.holds(c, {})
		not conditions.holds(c, {"other": "a"})
	}
}

test_unknown_op_never_holds if not conditions.holds(cond("matches", "a"), {"p": "a"})

# deny_reasons: require fails closed, deny_if fires

test_require_reports_violations if {
	rules := {"require": [
		{"param": "amount", "op": "gt", "value": 0, "code": "AMOUNT_INVALID", "message": "positive"},
		{"param": "amount", "op": "lte", "value": 200, "code": "AMOUNT_OVER_LIMIT", "message": "max 200"},
	]}
	conditions.deny_reasons(rules, {"amount": 30}) == set()
	conditions.deny_reasons(rules, {"amount": 201}) == {{"code": "AMOUNT_OVER_LIMIT", "message": "max 200"}}
	conditions.deny_reasons(rules, {"amount": -1}) == {{"code": "AMOUNT_INVALID", "message": "positive"}}
}

test_require_fails_closed_on_missing_or_mistyped_parameter if {
	every c in every_op {
		{r.code | some r in conditions.deny_reasons({"require": [c]}, {})} == {"CONSTRAINT_VIOLATED"}
	}
	every op in ["gt", "gte", "lt", "lte"] {
		{r.code | some r in conditions.deny_reasons({"require": [cond(op, 1)]}, {"p": "1"})} == {"CONSTRAINT_VIOLATED"}
	}
}

test_require_default_code_and_message if {
	conditions.deny_reasons({"require": [cond("gt", 0)]}, {"p": 0}) == {{
		"code": "CONSTRAINT_VIOLATED",
		"message": "p: condition gt failed",
	}}
}

test_deny_if_reports_matches if {
	rules := {"deny_if": [{"param": "reason", "op": "contains_any", "value": ["fraud"], "code": "REASON_NOT_ALLOWED", "message": "no"}]}
	conditions.deny_reasons(rules, {"reason": "Suspected FRAUD"}) == {{"code": "REASON_NOT_ALLOWED", "message": "no"}}
	conditions.deny_reasons(rules, {"reason": "damaged"}) == set()
	conditions.deny_reasons(rules, {}) == set()
}

test_deny_if_default_code if {
	{r.code | some r in conditions.deny_reasons({"deny_if": [cond("eq", "a")]}, {"p": "a"})} == {"DENIED_BY_RULE"}
}

test_no_rules_no_reasons if {
	conditions.deny_reasons({}, {"p": 1}) == set()
	conditions.approval_reasons({}, {"p": 1}) == set()
}

# approval_reasons

test_requires_approval_if if {
	rules := {"requires_approval_if": [{"param": "amount", "op": "gt", "value": 50, "code": "OVER_50", "message": "m"}]}
	conditions.approval_reasons(rules, {"amount": 60}) == {{"code": "OVER_50", "message": "m"}}
	conditions.approval_reasons(rules, {"amount": 50}) == set()
	conditions.approval_reasons(rules, {}) == set()
}

test_requires_approval_if_default_code if {
	{r.code | some r in conditions.approval_reasons({"requires_approval_if": [cond("eq", "a")]}, {"p": "a"})} == {"APPROVAL_REQUIRED"}
}

test_requires_approval_true if {
	conditions.approval_reasons({"requires_approval": true}, {}) == {{
		"code": "APPROVAL_REQUIRED",
		"message": "this capability always requires a human approval",
	}}
}

test_requires_approval_must_be_true if {
	conditions.approval_reasons({"requires_approval": false}, {}) == set()
	conditions.approval_reasons({"requires_approval": "true"}, {}) == set()
}

test_require_without_param_key_fails_closed if {
	reasons := conditions.deny_reasons({"require": [{"op": "present", "code": "BROKEN"}]}, {"a": 1})
	{r.code | some r in reasons} == {"BROKEN"}
}

test_ops_without_value_never_hold if {
	every op in ["eq", "neq", "gt", "gte", "lt", "lte", "in", "not_in", "contains_any"] {
		not conditions.holds({"param": "p", "op": op}, {"p": "a"})
		not conditions.holds({"param": "p", "op": op}, {"p": 1})
	}
}

test_deny_list_in_list_order if {
	rules := {
		"require": [
			{"param": "p", "op": "gt", "value": 0},
			{"param": "q", "op": "present", "code": "Q_REQUIRED"},
			{"param": "p", "op": "lt", "value": 5},
		],
		"deny_if": [{"param": "p", "op": "eq", "value": 5, "code": "P_IS_5", "message": "no 5"}],
	}
	conditions.deny_list(rules, {"p": 5}) == [
		{"code": "Q_REQUIRED", "message": "q: condition present failed"},
		{"code": "CONSTRAINT_VIOLATED", "message": "p: condition lt failed"},
		{"code": "P_IS_5", "message": "no 5"},
	]
}

test_approval_list_in_list_order if {
	rules := {"requires_approval": true, "requires_approval_if": [
		{"param": "p", "op": "gt", "value": 1, "code": "B"},
		{"param": "p", "op": "lt", "value": 10, "code": "A"},
	]}
	[r.code | some r in conditions.approval_list(rules, {"p": 5})] == ["B", "A", "APPROVAL_REQUIRED"]
}

test_numeric_op_with_a_string_value_never_holds if {
	every op in ["gt", "gte", "lt", "lte"] {
		not conditions.holds({"param": "p", "op": op, "value": "200"}, {"p": 5})
	}
}

test_require_with_a_string_limit_denies if {
	reasons := conditions.deny_list({"require": [{"param": "p", "op": "lte", "value": "200", "code": "X"}]}, {"p": 5})
	[r.code | some r in reasons] == ["X"]
}
