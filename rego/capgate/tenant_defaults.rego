# METADATA
# title: Tenant defaults data package
# description: |
#   Declares package capgate.tenant_defaults, where bundle data sets the
#   budgets and rate_limits of tenants not listed under capgate.tenants (read
#   by capgate.lib.budgets). It defines no rules. Declaring the package keeps
#   the lookup cheap in rego-cpp when a bundle sets no defaults; when it does,
#   rego-cpp builds the (small) object for each lookup. (capgate.tenants is not
#   declared this way: rego-cpp would build the whole tenants object for each
#   lookup. The sidecar adds tenants: {} to bundle data that has none instead.)
package capgate.tenant_defaults
