# METADATA
# title: Parameter conditions
# description: |
#   A condition is a bundle-data object
#   {param, op, value | value_from, lookup, code, message} tested against the
#   tool's parameters. A condition on a parameter that is missing or of the
#   wrong type never holds, so `require` lists fail closed.
#   Operand: `value`, or `value_from: <name>` for the list or object at
#   data.capgate.facts[<name>] (a fact the bundle names once and many
#   conditions share). A value_from naming no fact reads as [], which fails
#   closed both ways: `in`/`all_*` never hold, `not_in`/`any_*_not_in` hold.
#   Subject: the parameter's value, or with `lookup: <name>` the entry of the
#   object data.capgate.facts[<name>] keyed by that value (a condition whose
#   key the fact lacks never holds; see capgate.lib.lookup for the index).
#   ops: eq, neq, gt, gte, lt, lte (numbers: both the parameter and the
#   condition's value must be numbers, else the condition does not hold);
#   in, not_in (value is a list);
#   all_in, any_not_in (the parameter is a list, or one value read as a list
#   of one: every element is in value / some element is not);
#   all_emails_in, any_email_not_in (as all_in / any_not_in for e-mail
#   addresses, compared lower-cased; an entry "@example.com" admits every
#   address at that domain; value entries are written in lower case);
#   url_host_in, url_host_not_in (the host of a URL parameter, with or
#   without a scheme, is / is not admitted by value: a host is admitted by an
#   entry equal to it or to one of its parent domains, so "example.com"
#   admits "www.example.com");
#   links_in, links_not_in (every link in a text parameter, a token starting
#   with "<scheme>://" or "www.", has an admitted host / some link has not;
#   a text without links is links_in);
#   matches, not_matches (value is an RE2 regular expression, as in OPA's
#   regex.match, searched for anywhere in a string parameter);
#   contains_any (value is a list of substrings, compared case-insensitively);
#   present (the parameter exists and is not null or "").
package capgate.lib.conditions

import data.capgate.lib.allowlist
import data.capgate.lib.lookup

# holds(cond, params): cond holds for params. A condition without param or op,
# or on a parameter params lacks, never holds; nor does one without value or
# value_from (its operand is null), unless its op is present.
# A condition on a list fact the embedded engine has indexed is decided by
# capgate.lib.allowlist instead (true or false), with the same result; the
# first test keeps that path out of the common case, a condition with a value.
holds(cond, params) := allowlist.holds(cond.op, value, name) if {
	cond.value_from
	name := allowlist.fact(cond)
	value := subject(cond, params)
} else if {
	value := subject(cond, params)
	op_holds(cond.op, value, operand(cond))
}

# operand(cond): cond.value; else the fact cond.value_from names ([] when the
# bundle has no such fact); else null.
operand(cond) := v if {
	v := cond.value
} else := v if {
	v := data.capgate.facts[cond.value_from]
} else := [] if {
	cond.value_from
} else := null

# subject(cond, params): what cond tests: the parameter's value, or with
# cond.lookup the fact entry keyed by it. The common case comes first: reading
# data.capgate.facts when a bundle has none costs rego-cpp tens of microseconds.
subject(cond, params) := v if {
	not cond.lookup
	v := params[cond.param]
} else := v if {
	v := lookup.fact_entry(cond.lookup, params[cond.param])
} else := v if {
	name := cond.lookup
	not data.capgate_index.indexed_facts[name]
	v := data.capgate.facts[name][params[cond.param]]
}

# op_holds(op, value, target): a condition with this op and operand (target)
# holds when its subject has this value. One else chain, tried in order,
# common ops first. op is passed on its own: rego-cpp compares a string
# argument faster than a field of an object argument. No branch binds a local
# variable (x := ...): rego-cpp would evaluate the binding, and what uses it,
# before the branch's op test.
op_holds(op, value, target) if {
	op == "gt"
	is_number(value)
	is_number(target)
	value > target
} else if {
	op == "lte"
	is_number(value)
	is_number(target)
	value <= target
} else if {
	op == "gte"
	is_number(value)
	is_number(target)
	value >= target
} else if {
	op == "lt"
	is_number(value)
	is_number(target)
	value < target
} else if {
	op == "in"
	value in target
} else if {
	op == "contains_any"
	is_string(value)
	contains_any(lower(value), target)
} else if {
	op == "eq"
	value == target
} else if {
	op == "neq"
	target != null
	value != target
} else if {
	op == "not_in"
	target != null
	not_in(value, target)
} else if {
	op == "present"
	not value in {null, ""}
} else if {
	list_or_text_op_holds(op, value, target)
}

# list_or_text_op_holds(op, value, target): the ops over lists, addresses,
# URLs and text, in a chain of their own: rego-cpp pays for each branch of a
# chain it walks, so the scalar ops above stay in a short one.
list_or_text_op_holds(op, value, target) if {
	op == "all_in"
	all_in(as_list(value), target)
} else if {
	op == "any_not_in"
	any_not_in(as_list(value), target)
} else if {
	op == "all_emails_in"
	all_emails_in(as_list(value), target)
} else if {
	op == "any_email_not_in"
	any_email_not_in(as_list(value), target)
} else if {
	op == "url_host_in"
	host_admitted(url_host(value), target)
} else if {
	op == "url_host_not_in"
	url_host_not_admitted(value, target)
} else if {
	op == "links_in"
	links_in(value, target)
} else if {
	op == "links_not_in"
	links_not_in(value, target)
} else if {
	op == "matches"
	is_string(value)
	regex.match(target, value)
} else if {
	op == "not_matches"
	is_string(value)
	is_string(target)
	not_matches(value, target)
}

# as_list(value): value if it is an array, else [value].
as_list(value) := value if {
	is_array(value)
} else := [value]

# all_in(values, targets): every element of values is in targets (an array).
all_in(values, targets) if {
	is_array(targets)
	every v in values {
		v in targets
	}
}

# any_not_in(values, targets): some element of values is not in targets.
any_not_in(values, targets) if {
	targets != null
	not all_in(values, targets)
}

all_emails_in(addresses, targets) if {
	is_array(targets)
	every a in addresses {
		email_admitted(a, targets)
	}
}

any_email_not_in(addresses, targets) if {
	targets != null
	not all_emails_in(addresses, targets)
}

# email_admitted(address, targets): the lower-cased address, or "@<domain>",
# is in targets. An address without exactly one "@" is admitted by nothing.
email_admitted(address, targets) if {
	is_string(address)
	lower(address) in targets
	count(split(address, "@")) == 2
} else if {
	is_string(address)
	parts := split(lower(address), "@")
	count(parts) == 2
	concat("", ["@", parts[1]]) in targets
}

# url_host(url): the lower-cased host of url (a scheme, user info, port, path,
# query and fragment are all optional). Undefined for a non-string or a URL
# without a host.
url_host(url) := host if {
	is_string(url)
	found := regex.find_all_string_submatch_n(host_pattern, lower(url), 1)
	host := trim_right(found[0][1], ".")
	host != ""
}

host_pattern := `^\s*(?:[a-z][a-z0-9+.-]*://)?(?:[^@/?#\s]*@)?([a-z0-9.-]+)`

# host_admitted(host, targets): host equals an entry of targets or is a
# subdomain of one.
host_admitted(host, targets) if {
	is_array(targets)
	some entry in targets
	admits(entry, host)
}

admits(entry, host) if entry == host

admits(entry, host) if endswith(host, concat("", [".", entry]))

# url_host_not_admitted(url, targets): url is a string whose host no entry
# admits, or that has no host. The host is bound before `not`: a negated call
# on an undefined argument is undefined, not true, in OPA.
url_host_not_admitted(url, targets) if {
	is_string(url)
	targets != null
	not url_host(url)
} else if {
	targets != null
	host := url_host(url)
	not host_admitted(host, targets)
}

# links(text): the links in text: tokens starting with "<scheme>://" or
# "www.", lower-cased.
links(text) := regex.find_n(`(?:[a-z][a-z0-9+.-]*://|www\.)[^\s<>"']+`, lower(text), -1)

links_in(text, targets) if {
	is_string(text)
	is_array(targets)
	every link in links(text) {
		host_admitted(url_host(link), targets)
	}
}

links_not_in(text, targets) if {
	is_string(text)
	targets != null
	not links_in(text, targets)
}

not_matches(value, pattern) if not regex.match(pattern, value)

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
			holds(cond, params)
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
			holds(cond, params)
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
