package config

import "time"

// Policy configures the access decision of the FHIR API (internal/policy; docs/access-control.md).
type Policy struct {
	// UserAccess bounds the user/ scopes of a Practitioner or PractitionerRole user with the
	// user's own permissions: all (every patient; the single-tenant default), compartment (the
	// resources of the R4 Practitioner compartment that reference the user) or care-team (the
	// patients whose CareTeam, general practitioner or Encounter participants include the user).
	UserAccess string `yaml:"user_access"`
	// HideExistence answers refusals of resources outside the token's access (another patient's,
	// a granular mismatch) 404, so that a client cannot tell them from missing ones; false
	// answers 403. The reason is audited either way.
	HideExistence bool `yaml:"hide_existence"`
	// MaxUserPatients caps the patients care-team may give one user; above it the user's
	// requests are refused (user-access-too-broad).
	MaxUserPatients int `yaml:"max_user_patients"`
	// Shadow is a second rule set evaluated beside the enforced one and only logged and
	// audited (never enforced), to try a stricter policy on real traffic first.
	Shadow PolicyShadow `yaml:"shadow"`
	// Labels enforces security labels against the clearance of tokens.
	Labels PolicyLabels `yaml:"labels"`
	// Roles are the roles of users and clients: clearance, scope ceiling, purpose of use and
	// break-glass permission. Defaults: DefaultRoles.
	Roles map[string]Role `yaml:"roles"`
	// ClientRoles gives clients roles (client_id → role names): a client's clearance bounds
	// the user's, and is the clearance of its client_credentials tokens.
	ClientRoles map[string][]string `yaml:"client_roles"`
	// Consent enforces patients' Consent resources.
	Consent PolicyConsent `yaml:"consent"`
	// BreakGlass configures emergency access.
	BreakGlass PolicyBreakGlass `yaml:"break_glass"`
}

// PolicyShadow is the shadow rule set; an empty Mode disables it.
type PolicyShadow struct {
	// Mode is "" (off) or audit-only.
	Mode string `yaml:"mode"`
	// UserAccess, HideExistence and MaxUserPatients are as in Policy.
	UserAccess      string `yaml:"user_access"`
	HideExistence   bool   `yaml:"hide_existence"`
	MaxUserPatients int    `yaml:"max_user_patients"`
}

// PolicyShadowAuditOnly is the only shadow mode: decide, record, never enforce.
const PolicyShadowAuditOnly = "audit-only"

// The maximum of max_user_patients: the care-team set becomes one OR clause in every search.
const maxPolicyUserPatients = 10000

// DefaultPolicy returns the policy defaults: every patient for user/ scopes, existence hidden
// (404), at most 1000 patients per care-team user, no shadow.
func DefaultPolicy() Policy {
	return Policy{
		UserAccess:      "all",
		HideExistence:   true,
		MaxUserPatients: 1000,
		Shadow:          PolicyShadow{UserAccess: "all", HideExistence: true, MaxUserPatients: 1000},
		Labels:          PolicyLabels{Enforce: true, DefaultClearance: Clearance{Confidentiality: "N"}},
		Roles:           DefaultRoles(),
		Consent:         PolicyConsent{Enforce: true, CacheTTL: time.Minute, RecordAuthorizations: true},
		BreakGlass:      PolicyBreakGlass{TTL: 15 * time.Minute},
	}
}

// ShadowEnabled reports whether the shadow rule set is evaluated.
func (p *Policy) ShadowEnabled() bool { return p.Shadow.Mode == PolicyShadowAuditOnly }

func (p *Policy) validate(v *Problems) {
	checkUserAccess(v, "policy.user_access", p.UserAccess)
	checkMaxUserPatients(v, "policy.max_user_patients", p.MaxUserPatients)
	p.validateSecurity(v)
	switch p.Shadow.Mode {
	case "":
	case PolicyShadowAuditOnly:
		checkUserAccess(v, "policy.shadow.user_access", p.Shadow.UserAccess)
		checkMaxUserPatients(v, "policy.shadow.max_user_patients", p.Shadow.MaxUserPatients)
	default:
		v.Add("policy.shadow.mode", "must be empty (off) or %s, got %q", PolicyShadowAuditOnly, p.Shadow.Mode)
	}
}

func checkUserAccess(v *Problems, key, s string) {
	switch s {
	case "all", "compartment", "care-team":
	default:
		v.Add(key, "must be all, compartment or care-team, got %q", s)
	}
}

func checkMaxUserPatients(v *Problems, key string, n int) {
	if n < 1 || n > maxPolicyUserPatients {
		v.Add(key, "must be between 1 and %d", maxPolicyUserPatients)
	}
}
