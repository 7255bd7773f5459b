package authn

import "slices"

// Clearance is what security labels a token's holder may see (the clearance claim the
// authorization server computes from the roles of the user and of the client): the highest
// confidentiality code (http://terminology.hl7.org/CodeSystem/v3-Confidentiality, U < L < M <
// N < R < V) and the sensitivity codes (http://terminology.hl7.org/CodeSystem/v3-ActCode: HIV,
// PSY, ETH, SUD, ...) it may see. The policy package enforces it.
type Clearance struct {
	Confidentiality string   `json:"confidentiality"`
	Sensitivity     []string `json:"sensitivity,omitempty"`
}

// BreakGlass is the break_glass claim of an emergency-access token: the written reason the
// clinician gave and the review item that records it.
type BreakGlass struct {
	Reason string `json:"reason"`
	// Review is the id of the review-queue item (GET /admin/break-glass).
	Review string `json:"review,omitempty"`
}

// ConfidentialityLevels are the v3 confidentiality codes from the least to the most restricted.
var ConfidentialityLevels = []string{"U", "L", "M", "N", "R", "V"}

// ConfidentialityRank is the position of code in ConfidentialityLevels, or -1.
func ConfidentialityRank(code string) int { return slices.Index(ConfidentialityLevels, code) }

// PurposeBreakGlass is the v3 ActReason purpose of use of emergency access.
const PurposeBreakGlass = "BTG"

// HasPurpose reports whether the token carries the purpose of use code.
func (p *Principal) HasPurpose(code string) bool { return slices.Contains(p.PurposeOfUse, code) }

// IsBreakGlass reports whether the token is an emergency-access token: purpose BTG and a
// written reason. Either alone is not.
func (p *Principal) IsBreakGlass() bool {
	return p.BreakGlass != nil && p.BreakGlass.Reason != "" && p.HasPurpose(PurposeBreakGlass)
}

// codeOK accepts the characters of a v3 code (ActCode, ActReason): letters, digits, '-' and
// '_', 1 to 64 of them.
func codeOK(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// checkSecurity validates the clearance, purpose of use and break-glass claims. A malformed
// claim refuses the token rather than being ignored (ignoring a clearance would widen nothing,
// but ignoring a purpose restriction could).
func checkSecurity(c *claims) error {
	if cl := c.Clearance; cl != nil {
		if ConfidentialityRank(cl.Confidentiality) < 0 {
			return invalidToken("the access token's clearance has an unknown confidentiality code", nil)
		}
		if len(cl.Sensitivity) > 64 {
			return invalidToken("the access token's clearance is too large", nil)
		}
		for _, s := range cl.Sensitivity {
			if s != "*" && !codeOK(s) {
				return invalidToken("the access token's clearance has a malformed sensitivity code", nil)
			}
		}
	}
	if len(c.Purpose) > 16 {
		return invalidToken("the access token has too many purposes of use", nil)
	}
	for _, s := range c.Purpose {
		if !codeOK(s) {
			return invalidToken("the access token's purpose of use is malformed", nil)
		}
	}
	if c.BreakGlass != nil {
		if c.BreakGlass.Reason == "" || len(c.BreakGlass.Reason) > 1024 || !slices.Contains(c.Purpose, PurposeBreakGlass) {
			return invalidToken("the access token's break_glass claim needs a reason and purpose of use BTG", nil)
		}
	}
	return nil
}
