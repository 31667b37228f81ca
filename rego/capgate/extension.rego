# METADATA
# title: Extension package
# description: |
#   Declares package capgate.custom, where bundles define their own deny and
#   approval_reasons rules (see authz.rego). It defines no rules. Declaring
#   the package keeps the entrypoint's lookup of data.capgate.custom.* cheap in
#   rego-cpp when a bundle defines no custom rules: an undefined path directly
#   under data.capgate costs rego-cpp about 80 us per query, one inside a
#   declared package does not.
package capgate.custom
