# METADATA
# title: Keyed lookups in bundle data
# description: |
#   entry(map, key), fact_entry(name, key) and member(name, x) are
#   data.capgate[map][key] (map: tenants, capabilities or workflows),
#   data.capgate.facts[name][key] and `x in data.capgate.facts[name]`, read
#   through the index the embedded engine adds, at a cost that does not grow
#   with the data in rego-cpp. They are undefined for data the index does not
#   hold: callers try them first, then read the data directly when its flag
#   (data.capgate_index.indexed[map], indexed_facts[name],
#   indexed_members[name]) is not true, as OPA and `opa test`, which have no
#   index, always do.
#   Why: rego-cpp (1.5.2, the sidecar's embedded engine) finds a key in an
#   object by comparing it with each key in turn, 1-5 us a key. So
#   data.capgate.tenants[id] cost it 10 ms with 10,000 tenants when id is not
#   listed (the common case: unlisted tenants get tenant_defaults), and an
#   unknown capability a scan of every capability.
#   How: the embedded engine adds data.capgate_index (see
#   capgate.policy.embedded). Each map's entries are filed in 4,096 buckets
#   by the first three hex digits of the md5 of their key, as nested arrays
#   of 16 indexed by digit: tenants[d0][d1][d2][id] ==
#   data.capgate.tenants[id] (facts[fact][d0][d1][d2][key] for object facts,
#   members[fact][d0][d1][d2][x] == true for lists of strings), and flags
#   what it indexed. An array index costs rego-cpp the same at any size, so a
#   lookup compares only the keys of one bucket (one for every 4,096
#   entries): about 100-150 us whatever the size. Data the engine does not
#   index (fewer than 32 entries, not an object, a key that JSON escapes) is
#   flagged false. A key that is not a string is in no map.
#   rego-cpp costs kept out of these bodies (each grows with the data): a
#   whole map as a value (passed to a function, or under `not`), a key looked
#   up directly in a large object, a function's argument used as a key in a
#   data path (rego-cpp scans for it, copying each entry: it is bound to a
#   local first, k := key), and work before a test that can fail (rego-cpp
#   evaluates a body's bindings before its tests: the tree is bound first).
package capgate.lib.lookup

# digits: a hex digit's position is its value (indexof).
digits := "0123456789abcdef"

# entry(map, key): data.capgate[map][key], for a map the engine has indexed.
# The tree is bound first: for a map without one, the body stops there.
entry(map, key) := v if {
	m := map
	tree := data.capgate_index[m]
	k := key
	is_string(k)
	h := crypto.md5(k)
	i := indexof(digits, substring(h, 0, 1))
	j := indexof(digits, substring(h, 1, 1))
	l := indexof(digits, substring(h, 2, 1))
	v := tree[i][j][l][k]
}

# fact_entry(name, key): data.capgate.facts[name][key], for an object fact the
# engine has indexed.
fact_entry(name, key) := v if {
	f := name
	tree := data.capgate_index.facts[f]
	k := key
	is_string(k)
	h := crypto.md5(k)
	i := indexof(digits, substring(h, 0, 1))
	j := indexof(digits, substring(h, 1, 1))
	l := indexof(digits, substring(h, 2, 1))
	v := tree[i][j][l][k]
}

# member(name, x): x is an element of data.capgate.facts[name], for a list of
# strings the engine has indexed.
member(name, x) if {
	f := name
	tree := data.capgate_index.members[f]
	k := x
	is_string(k)
	h := crypto.md5(k)
	i := indexof(digits, substring(h, 0, 1))
	j := indexof(digits, substring(h, 1, 1))
	l := indexof(digits, substring(h, 2, 1))
	tree[i][j][l][k]
}
