package capgate.lib.lookup_test

import data.capgate.lib.budgets
import data.capgate.lib.capability
import data.capgate.lib.conditions
import data.capgate.lib.lookup
import data.capgate.lib.workflow

# The index the embedded engine builds (capgate.policy.embedded), built here in
# Rego so that OPA runs the indexed paths of capgate.lib.lookup too.

# tree(m): the entries of the object m filed in the bucket tree[d0][d1][d2]
# given by the first three hex digits of the md5 of their key.
tree(m) := [[[{key: value |
	some key, value in m
	path(key) == [d0, d1, d2]
} |
	some d2 in numbers.range(0, 15)
] |
	some d1 in numbers.range(0, 15)
] |
	some d0 in numbers.range(0, 15)
]

path(key) := [indexof(lookup.digits, substring(h, i, 1)) | some i in [0, 1, 2]] if {
	h := crypto.md5(key)
}

# members(list): the tree of a list of strings.
members(list) := tree({x: true | some x in list})

tenants := {"acme": {"budgets": []}, "globex": {"rate_limits": []}, "initech": {}}

capabilities := {"issue_refund": {"class": "write"}, "read_ticket": {"class": "read"}, "disabled": false}

workflows := {"refund_request": {"run_limits": {}}}

facts := {
	"nightly_price": {"Cheap Inn": 80, "Palace": 900, "Breizh Café": 60},
	"payees": ["CH93", "Spotify"],
}

index := {
	"tenants": tree(tenants),
	"capabilities": tree(capabilities),
	"workflows": tree(workflows),
	"facts": {"nightly_price": tree(facts.nightly_price)},
	"members": {"payees": members(facts.payees)},
	"indexed": {"tenants": true, "capabilities": true, "workflows": true},
	"indexed_facts": {"nightly_price": true},
	"indexed_members": {"payees": true},
}

test_the_tree_files_a_key_under_its_md5 if {
	# md5("acme") = 53bce4f1...
	t := tree({"acme": 1})
	t[5][3][11] == {"acme": 1}
	count([b | some b in t[5][3]; b != {}]) == 1
}

test_the_index_finds_every_entry if {
	every id, entry in tenants {
		lookup.entry("tenants", id) == entry with data.capgate_index as index
	}
	every name, entry in capabilities {
		lookup.entry("capabilities", name) == entry with data.capgate_index as index
	}
	lookup.entry("workflows", "refund_request") == {"run_limits": {}} with data.capgate_index as index
	lookup.fact_entry("nightly_price", "Palace") == 900 with data.capgate_index as index
	lookup.fact_entry("nightly_price", "Breizh Café") == 60 with data.capgate_index as index
	lookup.member("payees", "Spotify") with data.capgate_index as index
}

test_the_index_misses if {
	not lookup.entry("tenants", "umbrella") with data.capgate_index as index
	not lookup.entry("capabilities", "wire_transfer") with data.capgate_index as index
	not lookup.entry("workflows", "") with data.capgate_index as index
	not lookup.fact_entry("nightly_price", "Ritz") with data.capgate_index as index
	not lookup.fact_entry("payees", "CH93") with data.capgate_index as index
	not lookup.member("payees", "spotify") with data.capgate_index as index
	not lookup.member("nightly_price", "Palace") with data.capgate_index as index
}

test_keys_that_are_not_strings_are_in_no_map if {
	not lookup.entry("tenants", 7) with data.capgate_index as object.union(index, {"tenants": tree({"7": {}})})
	not lookup.fact_entry("nightly_price", ["Palace"]) with data.capgate_index as index
	not lookup.member("payees", 7) with data.capgate_index as index
}

# The library reads a flagged map through the index only (the engine builds
# both from the same data, so an entry missing from the index is not found),
# and any other map directly.

test_the_library_reads_indexed_maps_through_the_index if {
	capability.definition == {"class": "read"} with input as {"capability": "read_ticket"}
		with data.capgate_index as index
	not capability.definition with input as {"capability": "other"} with data.capgate_index as index
		with data.capgate.capabilities as {"other": {}}
	workflow.definition == {"run_limits": {}} with input as {"run": {"workflow": "refund_request"}}
		with data.capgate_index as index
	budgets.tenant == {"budgets": []} with input as {"tenant_id": "acme"} with data.capgate_index as index
	budgets.tenant == {"d": 1} with input as {"tenant_id": "other"} with data.capgate_index as index
		with data.capgate.tenants as {"other": {}} with data.capgate.tenant_defaults as {"d": 1}
	conditions.subject({"param": "p", "lookup": "nightly_price"}, {"p": "Palace"}) == 900
		with data.capgate_index as index
}

test_the_library_reads_maps_without_a_flag_directly if {
	unflagged := object.union(object.remove(index, ["indexed", "indexed_facts"]), {"indexed": {"tenants": true}})
	capability.definition == {"x": 1} with input as {"capability": "other"} with data.capgate_index as unflagged
		with data.capgate.capabilities as {"other": {"x": 1}}
	budgets.tenant == {} with input as {"tenant_id": "initech"} with data.capgate_index as unflagged
	conditions.subject({"param": "p", "lookup": "nightly_price"}, {"p": "Cheap Inn"}) == 80
		with data.capgate_index as unflagged with data.capgate.facts as facts
}
