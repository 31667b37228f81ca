# METADATA
# title: Parameter conditions
# description: |
#   A condition is a bundle-data object {param, op, value, code, message} tested
#   against the tool's parameters. A condition on a parameter that is missing or
#   of the wrong type never holds, so `require` lists fail closed.
#   ops: eq, neq, gt, gte, lt, lte (numbers); in, not_in (value is a list);
#   contains_any (value is a list of substrings, compared case-insensitively);
#   present (the parameter exists and is not null or "").
package capgate.lib.conditions

holds(cond, params) if {
	cond.op == "eq"
	params[cond.param] == cond.value
}

holds(cond, params) if {
	cond.op == "neq"
	params[cond.param] != cond.value
}

holds(cond, params) if {
	cond.op == "gt"
	is_number(params[cond.param])
	params[cond.param] > cond.value
}

holds(cond, params) if {
	cond.op == "gte"
	is_number(params[cond.param])
	params[cond.param] >= cond.value
}

holds(cond, params) if {
	cond.op == "lt"
	is_number(params[cond.param])
	params[cond.param] < cond.value
}

holds(cond, params) if {
	cond.op == "lte"
	is_number(params[cond.param])
	params[cond.param] <= cond.value
}

holds(cond, params) if {
	cond.op == "in"
	params[cond.param] in cond.value
}

holds(cond, params) if {
	cond.op == "not_in"
	value := params[cond.param]
	not value in cond.value
}

holds(cond, params) if {
	cond.op == "contains_any"
	is_string(params[cond.param])
	some needle in cond.value
	contains(lower(params[cond.param]), lower(needle))
}

holds(cond, params) if {
	cond.op == "present"
	value := params[cond.param]
	not value in {null, ""}
}

# reason(cond, default_code) is the {code, message} a condition reports.
reason(cond, default_code) := {
	"code": object.get(cond, "code", default_code),
	"message": object.get(cond, "message", sprintf("%s: condition %s failed", [object.get(cond, "param", ""), object.get(cond, "op", "")])),
}

# deny_reasons(rules, params) are the reasons of every violated rule set:
# rules.require conditions that do not hold, rules.deny_if conditions that do.
deny_reasons(rules, params) := {r |
	some cond in object.get(rules, "require", [])
	not holds(cond, params)
	r := reason(cond, "CONSTRAINT_VIOLATED")
} | {r |
	some cond in object.get(rules, "deny_if", [])
	holds(cond, params)
	r := reason(cond, "DENIED_BY_RULE")
}

# approval_reasons(rules, params): rules.requires_approval_if conditions that
# hold, plus one reason when rules.requires_approval is true.
approval_reasons(rules, params) := {r |
	some cond in object.get(rules, "requires_approval_if", [])
	holds(cond, params)
	r := reason(cond, "APPROVAL_REQUIRED")
} | {r |
	object.get(rules, "requires_approval", false) == true
	r := {"code": "APPROVAL_REQUIRED", "message": "this capability always requires a human approval"}
}
