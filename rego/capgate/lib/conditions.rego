# METADATA
# title: Parameter conditions
# description: |
#   A condition is a bundle-data object {param, op, value, code, message} tested
#   against the tool's parameters. A condition on a parameter that is missing or
#   of the wrong type never holds, so `require` lists fail closed.
#   ops: eq, neq, gt, gte, lt, lte (numbers: both the parameter and the
#   condition's value must be numbers, else the condition does not hold);
#   in, not_in (value is a list);
#   contains_any (value is a list of substrings, compared case-insensitively);
#   present (the parameter exists and is not null or "").
package capgate.lib.conditions

# holds(cond, params): cond holds for params. A condition without param or op,
# or on a parameter params lacks, never holds.
holds(cond, params) if {
	value := params[cond.param]
	op_holds(cond.op, value, cond)
}

# op_holds(op, value, cond): cond, whose op is op, holds when its parameter has
# this value. One else chain, tried in order, common ops first. op is passed on
# its own: rego-cpp compares a string argument faster than a field of an
# object argument. No branch binds a local variable (x := ...): rego-cpp would
# evaluate the binding, and what uses it, before the branch's op test.
op_holds(op, value, cond) if {
	op == "gt"
	is_number(value)
	is_number(cond.value)
	value > cond.value
} else if {
	op == "lte"
	is_number(value)
	is_number(cond.value)
	value <= cond.value
} else if {
	op == "gte"
	is_number(value)
	is_number(cond.value)
	value >= cond.value
} else if {
	op == "lt"
	is_number(value)
	is_number(cond.value)
	value < cond.value
} else if {
	op == "in"
	value in cond.value
} else if {
	op == "contains_any"
	is_string(value)
	contains_any(lower(value), cond.value)
} else if {
	op == "eq"
	value == cond.value
} else if {
	op == "neq"
	value != cond.value
} else if {
	op == "not_in"
	not_in(value, cond.value)
} else if {
	op == "present"
	not value in {null, ""}
}

# contains_any(lowered, needles): lowered contains one of needles, compared
# case-insensitively.
contains_any(lowered, needles) if {
	some needle in needles
	contains(lowered, lower(needle))
}

# not_in(value, targets): value is none of targets. A function, so that a
# condition without a value (targets undefined) does not hold in either
# engine: `not value in cond.value` holds there in rego-cpp, not in OPA.
not_in(value, targets) if not value in targets

# reason(cond, default_code) is the {code, message} a condition reports.
reason(cond, default_code) := {"code": code(cond, default_code), "message": message(cond)}

code(cond, default_code) := c if {
	c := cond.code
} else := default_code

# message(cond): cond.message, or "<param>: condition <op> failed". Not
# object.get(cond, k, ""): rego-cpp's sprintf prints that default as `""`,
# quotes included, and then emits a result that is not valid JSON.
message(cond) := m if {
	m := cond.message
} else := sprintf("%s: condition %s failed", [field(cond, "param"), field(cond, "op")])

field(cond, key) := v if {
	v := cond[key]
} else := ""

# deny_list(rules, params): the reasons of the rules.require conditions that do
# not hold, then of the rules.deny_if conditions that hold, each in list order.
# rules is a capability or workflow definition. Arrays, not sets: see
# capgate.lib.capability.
deny_list(rules, params) := [r |
	some list in [
		[reason(cond, "CONSTRAINT_VIOLATED") |
			some cond in rules.require
			not holds(cond, params)
		],
		[reason(cond, "DENIED_BY_RULE") |
			some cond in rules.deny_if
			value := params[cond.param]
			op_holds(cond.op, value, cond)
		],
	]
	some r in list
]

# approval_list(rules, params): the reasons of the rules.requires_approval_if
# conditions that hold, in list order, then one when rules.requires_approval is
# true.
approval_list(rules, params) := [r |
	some list in [
		[reason(cond, "APPROVAL_REQUIRED") |
			some cond in rules.requires_approval_if
			value := params[cond.param]
			op_holds(cond.op, value, cond)
		],
		[always_approval | rules.requires_approval == true],
	]
	some r in list
]

always_approval := {"code": "APPROVAL_REQUIRED", "message": "this capability always requires a human approval"}

# deny_reasons(rules, params): deny_list as a set.
deny_reasons(rules, params) := {r | some r in deny_list(rules, params)}

# approval_reasons(rules, params): approval_list as a set.
approval_reasons(rules, params) := {r | some r in approval_list(rules, params)}
