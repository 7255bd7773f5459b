package policy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// The code systems of the security labels the engine enforces (FHIR R4 security-labels.html).
const (
	ConfidentialitySystem = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
	ActCodeSystem         = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
)

// DefaultSensitivityCodes are the v3 ActCode sensitivity codes enforced when LabelPolicy names
// none: the HL7 Healthcare Privacy and Security Classification System's information
// sensitivity codes (_InformationSensitivityPolicy, ActInformationSensitivityPolicy and its
// specialisations). A resource labelled with one of them is visible only to a clearance that
// lists it.
var DefaultSensitivityCodes = []string{
	"ETH", "GDIS", "HIV", "MST", "SCA", "SDV", "SEX", "SPI", "BH", "COGN", "DVD", "EMOTDIS", "MH",
	"PSY", "PSYTHPN", "SICKLE", "SUD", "STD", "TBOO", "VIO", "DEMO", "DOB", "GENDER", "LIVARG",
	"MARST", "PATLOC", "RACE", "REL", "B", "EMPL", "LOCIS", "SSP", "ADOL", "CEL", "DIA", "DRGIS",
	"EMP", "PDS", "PHY", "PRS", "COMPT", "ACOCOMPT", "CTCOMPT", "FMCOMPT", "HRCOMPT", "LRCOMPT",
	"PACOMPT", "RESCOMPT", "RMGTCOMPT",
}

// LabelPolicy configures the enforcement of security labels (Config.Labels).
type LabelPolicy struct {
	// Sensitivity is the vocabulary of v3 ActCode sensitivity codes enforced; nil means
	// DefaultSensitivityCodes. A code outside it is not enforced.
	Sensitivity []string
	// Default is the clearance of a token that carries no clearance claim. Its zero value
	// (no confidentiality) sees only resources without enforced labels. Sensitivity "*"
	// clears every code.
	Default authn.Clearance
	// Redact returns resources redacted instead of hiding them (redact.go).
	Redact []Redaction
}

// label is one enforced security label.
type label struct{ system, code string }

func (l label) String() string { return l.system + "|" + l.code }

// labelRules are the labels a subject may not see, compiled once per decision.
type labelRules struct {
	hidden map[label]bool
	// value is the _security:not value that hides them all in a search ("" when none is hidden).
	value string
	// redact are the hidden labels whose resources of some types are returned redacted rather
	// than hidden: label → type → element paths removed. nil when none (or strict).
	redact map[label]map[string][]string
}

// labelsFor computes what labels the principal may not see under the engine's label policy;
// nil when labels are not enforced or nothing is hidden. Break-glass (purpose BTG with a reason)
// lifts the sensitivity codes and raises confidentiality to R; V stays with the clearance.
func (e *Engine) labelsFor(p *authn.Principal) *labelRules {
	lp := e.labels
	if lp == nil {
		return nil
	}
	cl := lp.Default
	if p.Clearance != nil {
		cl = *p.Clearance
	}
	rank := authn.ConfidentialityRank(cl.Confidentiality)
	btg := p.IsBreakGlass()
	if btg && rank < authn.ConfidentialityRank("R") {
		rank = authn.ConfidentialityRank("R")
	}
	r := &labelRules{hidden: map[label]bool{}}
	for i, c := range authn.ConfidentialityLevels {
		if i > rank {
			r.hidden[label{ConfidentialitySystem, c}] = true
		}
	}
	if !btg && !slices.Contains(cl.Sensitivity, "*") {
		for _, c := range e.sensitivity {
			if !slices.Contains(cl.Sensitivity, c) {
				r.hidden[label{ActCodeSystem, c}] = true
			}
		}
	}
	if len(r.hidden) == 0 {
		return nil
	}
	for l := range r.hidden {
		if byType := e.redact[l]; byType != nil {
			if r.redact == nil {
				r.redact = map[label]map[string][]string{}
			}
			r.redact[l] = byType
		}
	}
	r.value = r.exclusion(nil)
	return r
}

// exclusion is the _security:not value for a search of types: every hidden label except those
// whose resources of every one of types are redacted instead (nil types: every hidden label).
func (r *labelRules) exclusion(types []string) string {
	if r.redact == nil && r.value != "" {
		return r.value // nothing is redacted: every hidden label, computed once
	}
	var vals []string
	for l := range r.hidden {
		if len(types) > 0 && r.redactsAll(l, types) {
			continue
		}
		vals = append(vals, l.String())
	}
	slices.Sort(vals)
	return strings.Join(vals, ",")
}

func (r *labelRules) redactsAll(l label, types []string) bool {
	byType := r.redact[l]
	if byType == nil {
		return false
	}
	for _, t := range types {
		if byType[t] == nil {
			return false
		}
	}
	return true
}

// clauses compile the label rules into the _security:not clause for a search of types (every
// resource type has _security): none when every hidden label is redacted for these types. The
// clause matches the resources that carry none of the excluded labels, those without labels
// included, exactly as the Matcher and the stores evaluate it.
func (r *labelRules) clauses(e *Engine, types []string) ([]search.Clause, error) {
	v := r.exclusion(types)
	if v == "" {
		return nil, nil
	}
	c, err := search.ParseClause(e.reg, types, "_security:not", v, search.ParseOptions{BaseURL: e.baseURL, Now: e.now})
	if err != nil {
		return nil, err
	}
	return []search.Clause{c}, nil
}

// searchable reports whether the rules add a clause to searches.
func (r *labelRules) searchable() bool { return r != nil && r.value != "" }

// bodyLabels are the system|code security labels of a resource body.
func bodyLabels(body []byte) ([]label, error) {
	var h struct {
		Meta struct {
			Security []struct {
				System string `json:"system"`
				Code   string `json:"code"`
			} `json:"security"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(body, &h); err != nil {
		return nil, fmt.Errorf("policy: security labels: %w", err)
	}
	out := make([]label, 0, len(h.Meta.Security))
	for _, s := range h.Meta.Security {
		out = append(out, label{s.System, s.Code})
	}
	return out, nil
}

// check decides whether a body of type typ is within the rules: visible as it is, visible once
// the elements at redact are removed, or hidden (some hidden label is not redacted for typ).
func (r *labelRules) check(typ string, body []byte) (visible bool, redact []string, err error) {
	if r == nil || len(body) == 0 {
		return true, nil, nil
	}
	ls, err := bodyLabels(body)
	if err != nil {
		return false, nil, err
	}
	for _, l := range ls {
		if !r.hidden[l] {
			continue
		}
		paths := r.redact[l][typ]
		if paths == nil {
			return false, nil, nil
		}
		for _, p := range paths {
			if !slices.Contains(redact, p) {
				redact = append(redact, p)
			}
		}
	}
	return true, redact, nil
}

// setLabels checks and installs the label policy.
func (e *Engine) setLabels(lp *LabelPolicy) error {
	if lp == nil {
		return nil
	}
	if lp.Default.Confidentiality != "" && authn.ConfidentialityRank(lp.Default.Confidentiality) < 0 {
		return fmt.Errorf("policy: default clearance confidentiality %q is not one of %v", lp.Default.Confidentiality, authn.ConfidentialityLevels)
	}
	e.labels = lp
	e.sensitivity = lp.Sensitivity
	if e.sensitivity == nil {
		e.sensitivity = DefaultSensitivityCodes
	}
	for _, c := range e.sensitivity {
		if !codeLike(c) {
			return fmt.Errorf("policy: sensitivity code %q", c)
		}
	}
	return e.setRedaction(lp.Redact)
}
