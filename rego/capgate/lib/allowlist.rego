# METADATA
# title: Conditions over an indexed allowlist fact
# description: |
#   A condition whose operand is a list fact (`value_from: <name>`, no
#   `value`) that the embedded engine has indexed (see capgate.lib.lookup)
#   is tested here, through lookup.member, instead of on the list itself.
#   Same results as capgate.lib.conditions on the list, and a cost that does
#   not grow with it in rego-cpp, which copies a list passed to a function
#   and tests `x in list` key by key (10,000 payees: 20 ms a decision; 10,000
#   contacts under any_email_not_in: 40 ms). In OPA, and in `opa test`
#   without data.capgate_index, no fact is indexed and nothing here runs.
#   Indexed: the ops that test membership (in, not_in, all_in, any_not_in,
#   all_emails_in, any_email_not_in, url_host_in, url_host_not_in, links_in,
#   links_not_in). Any other op on such a fact is tested on the list, as in
#   capgate.lib.conditions.
package capgate.lib.allowlist

import data.capgate.lib.conditions
import data.capgate.lib.lookup

# fact(cond): the name of the indexed list fact that is cond's operand;
# undefined when cond has a `value` (even false or null: value wins) or its
# value_from names no indexed list.
fact(cond) := name if {
	name := cond.value_from
	data.capgate_index.indexed_members[name]
	not value_given(cond)
}

value_given(cond) if {
	_ = cond.value
}

# holds(op, value, name): op_holds(op, value, data.capgate.facts[name]) for
# an indexed fact (see capgate.lib.conditions for each op), as true or false.
# Two branches an op, "true if it holds" then "false", so that a condition
# that does not hold stops the chain there: rego-cpp pays for every branch it
# walks. Common ops first; ops that do not test membership (the last two
# branches) are tested on the list itself.
holds(op, value, name) if {
	op == "in"
	lookup.member(name, value)
} else := false if {
	op == "in"
} else if {
	op == "not_in"
	not lookup.member(name, value)
} else := false if {
	op == "not_in"
} else if {
	op == "any_email_not_in"
	some a in conditions.as_list(value)
	not email_admitted(a, name)
} else := false if {
	op == "any_email_not_in"
} else if {
	op == "all_emails_in"
	every a in conditions.as_list(value) {
		email_admitted(a, name)
	}
} else := false if {
	op == "all_emails_in"
} else if {
	op == "url_host_in"
	host_admitted(conditions.url_host(value), name)
} else := false if {
	op == "url_host_in"
} else if {
	op == "url_host_not_in"
	url_host_not_admitted(value, name)
} else := false if {
	op == "url_host_not_in"
} else if {
	op == "links_not_in"
	is_string(value)
	not links_in(value, name)
} else := false if {
	op == "links_not_in"
} else if {
	op == "links_in"
	links_in(value, name)
} else := false if {
	op == "links_in"
} else if {
	op == "all_in"
	every v in conditions.as_list(value) {
		lookup.member(name, v)
	}
} else := false if {
	op == "all_in"
} else if {
	op == "any_not_in"
	some v in conditions.as_list(value)
	not lookup.member(name, v)
} else := false if {
	op == "any_not_in"
} else if {
	n := name
	conditions.op_holds(op, value, data.capgate.facts[n])
} else := false

# indexed_ops: the ops decided through the index.

indexed_ops := {
	"in", "not_in", "all_in", "any_not_in", "all_emails_in", "any_email_not_in",
	"url_host_in", "url_host_not_in", "links_in", "links_not_in",
}

# email_admitted(address, name): conditions.email_admitted on the fact.
email_admitted(address, name) if {
	is_string(address)
	lookup.member(name, lower(address))
	count(split(address, "@")) == 2
} else if {
	is_string(address)
	parts := split(lower(address), "@")
	count(parts) == 2
	lookup.member(name, concat("", ["@", parts[1]]))
}

# host_admitted(host, name): an entry equals host or is one of its parent
# domains, i.e. what follows one of its dots (conditions.admits: the entry
# equals host, or host ends with "." + entry).
host_admitted(host, name) if {
	lookup.member(name, host)
} else if {
	some i in indexof_n(host, ".")
	lookup.member(name, substring(host, i + 1, -1))
}

url_host_not_admitted(url, name) if {
	is_string(url)
	not conditions.url_host(url)
} else if {
	host := conditions.url_host(url)
	not host_admitted(host, name)
}

links_in(text, name) if {
	is_string(text)
	every link in conditions.links(text) {
		host_admitted(conditions.url_host(link), name)
	}
}
