package capgate.lib.allowlist_test

import data.capgate.lib.allowlist
import data.capgate.lib.conditions
import data.capgate.lib.lookup_test

# capgate.lib.allowlist must decide every condition on an indexed list fact
# as capgate.lib.conditions decides it on the list itself.

facts := {
	"payees": ["CH93", "Spotify"],
	"contacts": ["lily.white@gmail.com", "@bluesparrowtech.com"],
	"sites": ["www.our-company.com", "informations.com"],
	"ids": [7, "a"],
}

index := {
	"members": {name: lookup_test.members(facts[name]) | some name in ["payees", "contacts", "sites"]},
	"indexed_members": {"payees": true, "contacts": true, "sites": true},
}

# [op, fact, parameter value]
cases := [
	["in", "payees", "Spotify"], ["in", "payees", "spotify"], ["in", "payees", 7],
	["in", "payees", null], ["in", "payees", ["Spotify"]], ["in", "payees", ""],
	["in", "payees", "informations.com"], ["in", "sites", "Spotify"],
	["not_in", "payees", "Spotify"], ["not_in", "payees", "US13"], ["not_in", "payees", 7],
	["not_in", "payees", ["CH93"]],
	["all_in", "payees", ["CH93", "Spotify"]], ["all_in", "payees", "CH93"],
	["all_in", "payees", ["CH93", "x"]], ["all_in", "payees", []], ["all_in", "payees", [7]],
	["any_not_in", "payees", ["CH93", "Spotify"]], ["any_not_in", "payees", ["CH93", "x"]],
	["any_not_in", "payees", []], ["any_not_in", "payees", "x"],
	["all_emails_in", "contacts", ["Lily.White@gmail.com", "david@bluesparrowtech.com"]],
	["all_emails_in", "contacts", "david@BlueSparrowTech.com"],
	["all_emails_in", "contacts", ["x@gmail.com"]], ["all_emails_in", "contacts", []],
	["all_emails_in", "contacts", "lily.white@gmail.com@x.com"],
	["any_email_not_in", "contacts", ["lily.white@gmail.com"]],
	["any_email_not_in", "contacts", ["david@bluesparrowtech.com", "x@gmail.com"]],
	["any_email_not_in", "contacts", "x@luesparrowtech.com"],
	["any_email_not_in", "contacts", "x@evil.bluesparrowtech.com"],
	["any_email_not_in", "contacts", "bluesparrowtech.com"], ["any_email_not_in", "contacts", [7]],
	["url_host_in", "sites", "www.our-company.com"],
	["url_host_in", "sites", "https://WWW.our-company.com:443/blog?x=1"],
	["url_host_in", "sites", "www.informations.com/article"], ["url_host_in", "sites", "a..informations.com"],
	["url_host_in", "sites", "our-company.com"], ["url_host_in", "sites", "true-informations.com"],
	["url_host_in", "sites", "www.informations.com.evil.io"], ["url_host_in", "sites", ""],
	["url_host_in", "sites", 7],
	["url_host_not_in", "sites", "www.my-website-example.com/random"],
	["url_host_not_in", "sites", "https://www.our-company.com@evil.io/x"],
	["url_host_not_in", "sites", "informations.com"], ["url_host_not_in", "sites", "/relative/path"],
	["url_host_not_in", "sites", 7],
	["links_in", "sites", "Congrats on being the most active user!"],
	["links_in", "sites", "Read www.informations.com! and https://www.our-company.com/x."],
	["links_in", "sites", "ok www.informations.com, bad http://evil.io/x"], ["links_in", "sites", 7],
	["links_not_in", "sites", "Check out this link: WWW.example-phish.com"],
	["links_not_in", "sites", "see www.informations.com"], ["links_not_in", "sites", "no link"],
	["links_not_in", "sites", 7],
	# ops that do not test membership: decided on the list itself
	["eq", "payees", ["CH93", "Spotify"]], ["eq", "payees", "CH93"], ["neq", "payees", "CH93"],
	["contains_any", "payees", "paid to SPOTIFY"], ["present", "payees", "x"], ["gt", "payees", 3],
	["matches", "payees", "CH93"], ["nope", "payees", "CH93"],
]

# decides(case, ix, lists): whether the case's condition holds with ix as
# data.capgate_index and lists as data.capgate.facts.
decides(case, ix, lists) if {
	[op, fact, value] := case
	conditions.holds({"param": "p", "op": op, "value_from": fact}, {"p": value}) with data.capgate_index as ix
		with data.capgate.facts as lists
} else := false

test_indexed_facts_decide_as_the_lists if {
	every case in cases {
		decides(case, index, facts) == decides(case, {}, facts)
	}
}

test_membership_ops_read_the_index_only if {
	# The lists emptied, the index kept: the membership ops decide as before.
	emptied := {name: [] | some name, _ in facts}
	membership := [case | some case in cases; case[0] in allowlist.indexed_ops]
	count(membership) > 40
	every case in membership {
		decides(case, index, emptied) == decides(case, {}, facts)
	}
}

test_facts_not_indexed_are_read_as_lists if {
	decides(["in", "ids", 7], index, facts)
	decides(["not_in", "ids", 8], index, facts)
}

test_a_value_wins_over_an_indexed_fact if {
	not allowlist.fact({"op": "in", "value": false, "value_from": "payees"}) with data.capgate_index as index
	not allowlist.fact({"op": "in", "value": null, "value_from": "payees"}) with data.capgate_index as index
	allowlist.fact({"op": "in", "value_from": "payees"}) == "payees" with data.capgate_index as index
	conditions.holds({"param": "p", "op": "in", "value": ["x"], "value_from": "payees"}, {"p": "x"})
		with data.capgate_index as index
}
