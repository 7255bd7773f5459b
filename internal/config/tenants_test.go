package config

import (
	"strings"
	"testing"
)

// role_clearance parses, is off by default, and needs roles to give.
func TestTenantRoleClearance(t *testing.T) {
	yaml := `
tenants:
  - name: on
    upstream: {url: http://up.example/fhir}
    authorization: {issuer: https://idp.example, mode: jwks, role_clearance: true, claims: {roles: realm_access.roles}}
  - name: off
    upstream: {url: http://up.example/fhir}
    authorization: {issuer: https://idp.example, mode: jwks}
`
	cfg := Default()
	if err := Parse(strings.NewReader(yaml), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if !cfg.Tenants[0].Authorization.RoleClearance || cfg.Tenants[1].Authorization.RoleClearance {
		t.Fatalf("role_clearance = %v, %v; want true, false", cfg.Tenants[0].Authorization.RoleClearance, cfg.Tenants[1].Authorization.RoleClearance)
	}
	cfg.Policy.Roles = nil
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "tenants[0].authorization.role_clearance:") || strings.Contains(err.Error(), "tenants[1].authorization.role_clearance") {
		t.Fatalf("role_clearance without policy.roles: %v", err)
	}
}
