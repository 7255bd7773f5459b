package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/fhir/summary"
)

// PolicyLabels configures the enforcement of security labels (meta.security) against the
// clearance of tokens (docs/access-control.md §3.9).
type PolicyLabels struct {
	// Enforce turns label enforcement on (default true).
	Enforce bool `yaml:"enforce"`
	// Sensitivity is the vocabulary of v3 ActCode sensitivity codes enforced; empty means the
	// HL7 HCS list built into the policy package.
	Sensitivity []string `yaml:"sensitivity"`
	// DefaultClearance is the clearance of a token that carries none (a token of another
	// issuer, a user and client without roles).
	DefaultClearance Clearance `yaml:"default_clearance"`
	// Redact marks labels whose resources are returned redacted instead of hidden to a token
	// whose clearance does not cover them: the listed elements removed and meta.tag SUBSETTED.
	Redact []LabelRedaction `yaml:"redact"`
}

// LabelRedaction redacts the resources carrying one of Labels, for the types Elements names.
// A resource of another type, or with another label above the clearance, stays hidden.
type LabelRedaction struct {
	// Labels are confidentiality codes (U, L, M, N, R, V) or enforced sensitivity codes.
	Labels []string `yaml:"labels"`
	// Elements are, per resource type, the element paths removed (note, value[x],
	// component.value[x]); the narrative (text) and contained resources always go too.
	Elements map[string][]string `yaml:"elements"`
}

// Clearance is the highest v3 confidentiality code (U, L, M, N, R, V) and the sensitivity codes
// a role may see ("*": every code).
type Clearance struct {
	Confidentiality string   `yaml:"confidentiality"`
	Sensitivity     []string `yaml:"sensitivity"`
}

// Role is what a role (of a user or of a client) may see and delegate.
type Role struct {
	// Clearance bounds the security labels the role sees.
	Clearance Clearance `yaml:"clearance"`
	// ScopeCeiling is the most the role may delegate to an app (SMART scopes); empty leaves the
	// built-in ceiling of the authorization server (patient: patient/*.rs, clinician:
	// patient/*.cruds user/*.cruds).
	ScopeCeiling string `yaml:"scope_ceiling"`
	// PurposeOfUse are the v3 ActReason codes the role's tokens carry (TREAT for clinicians);
	// an authorize request may narrow them with purpose_of_use.
	PurposeOfUse []string `yaml:"purpose_of_use"`
	// BreakGlass allows the role to request emergency access (purpose BTG with a reason).
	BreakGlass bool `yaml:"break_glass"`
}

// PolicyBreakGlass configures emergency access.
type PolicyBreakGlass struct {
	// TTL is the lifetime of a break-glass access token (default 15m, at most 1h); it gets no
	// refresh token.
	TTL time.Duration `yaml:"ttl"`
}

// PolicyConsent configures the enforcement of patients' Consent resources.
type PolicyConsent struct {
	// Enforce turns Consent enforcement on (default true).
	Enforce bool `yaml:"enforce"`
	// CacheTTL bounds how long a patient's Consents are cached (writes through the FHIR API
	// invalidate at once); default 1m.
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// RecordAuthorizations records a Consent (permit, actor the app) when a patient authorises
	// an app on the consent page (default true).
	RecordAuthorizations bool `yaml:"record_authorizations"`
}

// DefaultRoles are the built-in roles: patients see their own record whatever its labels;
// clinicians see up to normal (N) without sensitivity codes, for treatment, and may break the
// glass; behavioral-health clinicians also see restricted (R) mental-health and substance-use
// data; privacy officers and auditors see no clinical data through their role.
func DefaultRoles() map[string]Role {
	return map[string]Role{
		"patient":   {Clearance: Clearance{Confidentiality: "V", Sensitivity: []string{"*"}}},
		"clinician": {Clearance: Clearance{Confidentiality: "N"}, PurposeOfUse: []string{"TREAT"}, BreakGlass: true},
		"behavioral-health": {
			Clearance:    Clearance{Confidentiality: "R", Sensitivity: []string{"PSY", "ETH", "SUD", "MH", "BH"}},
			PurposeOfUse: []string{"TREAT"},
		},
		"privacy-officer": {Clearance: Clearance{Confidentiality: "U"}},
	}
}

var v3Code = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func checkClearance(v *Problems, key string, c Clearance) {
	if !slices.Contains([]string{"U", "L", "M", "N", "R", "V"}, c.Confidentiality) {
		v.Add(key+".confidentiality", "must be one of U, L, M, N, R, V, got %q", c.Confidentiality)
	}
	for _, s := range c.Sensitivity {
		if s != "*" && !v3Code.MatchString(s) {
			v.Add(key+".sensitivity", "%q is not a v3 code", s)
		}
	}
}

func (p *Policy) validateSecurity(v *Problems) {
	if p.Labels.Enforce {
		checkClearance(v, "policy.labels.default_clearance", p.Labels.DefaultClearance)
	}
	for _, s := range p.Labels.Sensitivity {
		if !v3Code.MatchString(s) {
			v.Add("policy.labels.sensitivity", "%q is not a v3 code", s)
		}
	}
	p.validateRedaction(v)
	for name, r := range p.Roles {
		if !v3Code.MatchString(name) {
			v.Add("policy.roles", "role name %q must be letters, digits, '-' or '_'", name)
		}
		checkClearance(v, "policy.roles."+name+".clearance", r.Clearance)
		for _, c := range r.PurposeOfUse {
			if !v3Code.MatchString(c) || c == "BTG" {
				v.Add("policy.roles."+name+".purpose_of_use", "%q is not a purpose of use a role may carry (BTG is requested, never default)", c)
			}
		}
		if strings.ContainsAny(r.ScopeCeiling, "\t\r\n") {
			v.Add("policy.roles."+name+".scope_ceiling", "must be space-separated scopes")
		}
	}
	for client, roles := range p.ClientRoles {
		for _, r := range roles {
			if _, ok := p.Roles[r]; !ok {
				v.Add("policy.client_roles."+client, "role %q is not defined in policy.roles", r)
			}
		}
	}
	if p.BreakGlass.TTL <= 0 || p.BreakGlass.TTL > time.Hour {
		v.Add("policy.break_glass.ttl", "must be between 1s and 1h")
	}
	if p.Consent.Enforce && (p.Consent.CacheTTL < 0 || p.Consent.CacheTTL > time.Hour) {
		v.Add("policy.consent.cache_ttl", "must be between 0 and 1h")
	}
}

func (p *Policy) validateRedaction(v *Problems) {
	for i, r := range p.Labels.Redact {
		key := fmt.Sprintf("policy.labels.redact[%d]", i)
		if len(r.Labels) == 0 {
			v.Add(key+".labels", "names no label")
		}
		for _, l := range r.Labels {
			if !v3Code.MatchString(l) {
				v.Add(key+".labels", "%q is not a v3 code", l)
			}
		}
		if len(r.Elements) == 0 {
			v.Add(key+".elements", "names no resource type (resources of other types stay hidden)")
		}
		for typ, paths := range r.Elements {
			if len(paths) == 0 {
				v.Add(key+".elements."+typ, "lists no element")
			}
			for _, path := range paths {
				if err := summary.CheckPath(typ, path); err != nil {
					v.Add(key+".elements."+typ, "%v", err)
				}
			}
		}
	}
}
