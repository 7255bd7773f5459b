// Package rolesec derives what roles of the deployment (config policy.roles) give a token: the
// clearance and the default purposes of use (docs/access-control.md §3.9). fhirgate's
// authorization server and the verifier of a tenant's external issuer both use it, so that a
// role means the same on either path. It is a package of its own so that authn, which the pure
// policy engine imports, stays free of the configuration.
package rolesec

import (
	"slices"

	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/config"
)

// Clearance merges the clearances of the named roles that defined holds: the highest
// confidentiality and every sensitivity code of any of them (sorted). Names defined does not
// hold are ignored; nil when none is defined (the FHIR API then applies its default clearance).
func Clearance(defined map[string]config.Role, names []string) *authn.Clearance {
	var out *authn.Clearance
	for _, name := range names {
		r, ok := defined[name]
		if !ok {
			continue
		}
		if out == nil {
			out = &authn.Clearance{Confidentiality: r.Clearance.Confidentiality}
		} else if authn.ConfidentialityRank(r.Clearance.Confidentiality) > authn.ConfidentialityRank(out.Confidentiality) {
			out.Confidentiality = r.Clearance.Confidentiality
		}
		for _, s := range r.Clearance.Sensitivity {
			if !slices.Contains(out.Sensitivity, s) {
				out.Sensitivity = append(out.Sensitivity, s)
			}
		}
	}
	if out != nil {
		slices.Sort(out.Sensitivity)
	}
	return out
}

// Purposes are the default purposes of use of the named roles that defined holds: the union,
// sorted; nil when they carry none.
func Purposes(defined map[string]config.Role, names []string) []string {
	var out []string
	for _, name := range names {
		for _, p := range defined[name].PurposeOfUse {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	slices.Sort(out)
	return out
}
