package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/smart"
)

// errConsentUnbounded: a search across patients that no query can keep away from the patients
// whose Consent restricts the caller.
var errConsentUnbounded = errors.New("a patient's Consent restricts this access: search within one patient")

// ConsentSource supplies patients' Consent resources. The app implements it over the backend
// (with a cache invalidated by Consent writes); the engine parses and applies them, so the
// policy stays pure.
type ConsentSource interface {
	// PatientConsents returns the bodies of the Consent resources of the patient (any status
	// and scope: the engine keeps the active patient-privacy ones).
	PatientConsents(ctx context.Context, patient string) ([][]byte, error)
	// ConsentPatients returns the ids of the patients that have at least one Consent, at most
	// limit+1 of them.
	ConsentPatients(ctx context.Context, limit int) ([]string, error)
}

// Consent vocabulary (FHIR R4 Consent).
const (
	ConsentScopeSystem   = "http://terminology.hl7.org/CodeSystem/consentscope"
	ResourceTypesSystem  = "http://hl7.org/fhir/resource-types"
	ActReasonSystem      = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	ClientIDSystem       = "urn:ietf:params:oauth:client-id"
	maxConsentsPerPerson = 100
	// MaxConsentPatients caps the patients whose Consents an unbounded search consults; above
	// it such searches are refused.
	MaxConsentPatients = 1000
)

// consentDoc is the part of an R4 Consent the engine reads.
type consentDoc struct {
	ResourceType string `json:"resourceType"`
	Status       string `json:"status"`
	Scope        struct {
		Coding []coding `json:"coding"`
	} `json:"scope"`
	Patient   *reference      `json:"patient"`
	Provision *consentProvDoc `json:"provision"`
}

type coding struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

type reference struct {
	Reference  string `json:"reference"`
	Identifier *struct {
		System string `json:"system"`
		Value  string `json:"value"`
	} `json:"identifier"`
}

type period struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

type consentProvDoc struct {
	Type   string  `json:"type"`
	Period *period `json:"period"`
	Actor  []struct {
		Reference reference `json:"reference"`
	} `json:"actor"`
	Purpose       []coding          `json:"purpose"`
	Class         []coding          `json:"class"`
	SecurityLabel []coding          `json:"securityLabel"`
	DataPeriod    *period           `json:"dataPeriod"`
	Provision     []*consentProvDoc `json:"provision"`
}

// ParseConsent reads an R4 Consent body. It returns ok false for a Consent the engine does not
// enforce (not active, not patient-privacy, another patient's); an error for one that is
// active patient-privacy but malformed or of a shape the engine cannot enforce (the caller
// then fails closed).
func ParseConsent(body []byte, patient string) (doc *consentDoc, ok bool, err error) {
	var c consentDoc
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, false, fmt.Errorf("policy: consent: %w", err)
	}
	if c.ResourceType != "Consent" || c.Status != "active" {
		return nil, false, nil
	}
	privacy := false
	for _, cd := range c.Scope.Coding {
		if cd.System == ConsentScopeSystem && cd.Code == "patient-privacy" {
			privacy = true
		}
	}
	if !privacy || c.Patient == nil || c.Patient.Reference != "Patient/"+patient {
		return nil, false, nil
	}
	if c.Provision == nil {
		return nil, false, errors.New("policy: an active patient-privacy Consent without a provision")
	}
	if err := checkProvision(c.Provision, 0); err != nil {
		return nil, false, err
	}
	return &c, true, nil
}

func checkProvision(p *consentProvDoc, depth int) error {
	if p.Type != "permit" && p.Type != "deny" {
		return fmt.Errorf("policy: consent provision type %q (want permit or deny)", p.Type)
	}
	if depth > 1 {
		return errors.New("policy: consent provisions nested more than one level are not enforced")
	}
	for _, pe := range []*period{p.Period, p.DataPeriod} {
		if pe == nil {
			continue
		}
		for _, s := range []string{pe.Start, pe.End} {
			if s != "" {
				if _, err := parseFHIRTime(s); err != nil {
					return fmt.Errorf("policy: consent period %q: %w", s, err)
				}
			}
		}
	}
	for _, c := range p.Class {
		if c.System != ResourceTypesSystem || !smart.IsResourceType(c.Code) {
			return fmt.Errorf("policy: consent class %s|%s is not a resource type", c.System, c.Code)
		}
	}
	for _, l := range p.SecurityLabel {
		if l.System == "" || !codeLike(l.Code) {
			return fmt.Errorf("policy: consent security label %s|%s", l.System, l.Code)
		}
	}
	for _, c := range p.Provision {
		if err := checkProvision(c, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func codeLike(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	return !strings.ContainsAny(s, ",|$\\ \t\r\n")
}

// parseFHIRTime reads a FHIR dateTime (year, month, day or instant).
func parseFHIRTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02", "2006-01", "2006"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("not a FHIR dateTime")
}

// consentRules are the compiled Consent rules of one patient for one subject.
type consentRules struct {
	patient string
	// failClosed: a Consent could not be enforced; nothing of the patient is visible.
	failClosed bool
	// byType memoises the rule of each resource type.
	mu     sync.Mutex
	docs   []*consentDoc
	e      *Engine
	subj   *subject
	byType map[string]*typeRule
}

// typeRule is what the Consents allow of one resource type: nothing (hidden), or the
// resources matching every clause (none: all of them).
type typeRule struct {
	hidden  bool
	clauses []search.Clause
}

// restricts reports whether the rules hide anything of typ.
func (r *typeRule) restricts() bool { return r.hidden || len(r.clauses) > 0 }

// consentFor compiles the patient's Consents for the subject; nil when none applies.
func (e *Engine) consentFor(ctx context.Context, subj *subject, patient string) (*consentRules, error) {
	if e.consents == nil || subj.p.IsBreakGlass() {
		return nil, nil
	}
	if subj.consentCache != nil {
		subj.consentMu.Lock()
		r, ok := subj.consentCache[patient]
		subj.consentMu.Unlock()
		if ok {
			return r, nil
		}
	}
	bodies, err := e.consents.PatientConsents(ctx, patient)
	if err != nil {
		return nil, fmt.Errorf("policy: consents of Patient/%s: %w", patient, err)
	}
	r := &consentRules{patient: patient, e: e, subj: subj, byType: map[string]*typeRule{}}
	if len(bodies) > maxConsentsPerPerson {
		r.failClosed = true
	}
	for _, b := range bodies {
		doc, ok, err := ParseConsent(b, patient)
		if err != nil {
			r.failClosed = true
			continue
		}
		if ok && e.provisionApplies(subj, patient, doc.Provision) {
			r.docs = append(r.docs, doc)
		} else if ok && hasApplicableChild(e, subj, patient, doc.Provision) {
			r.docs = append(r.docs, doc)
		}
	}
	if r.failClosed && e.selfExempt(subj, patient) {
		// The patient's own access is never locked out by their own unenforceable Consent.
		r.failClosed = false
	}
	if !r.failClosed && len(r.docs) == 0 {
		r = nil
	}
	if subj.consentCache != nil {
		subj.consentMu.Lock()
		subj.consentCache[patient] = r
		subj.consentMu.Unlock()
	}
	return r, nil
}

func hasApplicableChild(e *Engine, subj *subject, patient string, p *consentProvDoc) bool {
	for _, c := range p.Provision {
		if e.provisionApplies(subj, patient, c) {
			return true
		}
	}
	return false
}

// selfExempt: the patient's own access (fhirUser Patient/{patient}) is bound only by
// provisions that name the client as actor.
func (e *Engine) selfExempt(subj *subject, patient string) bool {
	return subj.p.FHIRUser == "Patient/"+patient
}

// provisionApplies reports whether a provision's period, actor and purpose apply to the
// subject now. Class, security label and data period are not checked here: they select data.
func (e *Engine) provisionApplies(subj *subject, patient string, p *consentProvDoc) bool {
	now := e.now()
	if p.Period != nil {
		if p.Period.Start != "" {
			if t, _ := parseFHIRTime(p.Period.Start); now.Before(t) {
				return false
			}
		}
		if p.Period.End != "" {
			if t, _ := parseFHIRTime(p.Period.End); !now.Before(t) {
				return false
			}
		}
	}
	self := e.selfExempt(subj, patient)
	if len(p.Actor) == 0 {
		if self {
			return false
		}
	} else {
		match := false
		for _, a := range p.Actor {
			ref := a.Reference
			switch {
			case ref.Identifier != nil && ref.Identifier.System == ClientIDSystem && ref.Identifier.Value == subj.p.ClientID:
				match = true
			case ref.Reference == "Device/"+subj.p.ClientID:
				match = true
			case !self && ref.Reference != "" && ref.Reference == subj.p.FHIRUser:
				match = true
			}
		}
		if !match {
			return false
		}
	}
	if len(p.Purpose) > 0 {
		match := false
		for _, c := range p.Purpose {
			if (c.System == ActReasonSystem || c.System == "") && subj.p.HasPurpose(c.Code) {
				match = true
			}
		}
		if !match {
			return false
		}
	}
	return true
}

// classCovers reports whether a provision's class selects typ (no class selects every type).
func classCovers(p *consentProvDoc, typ string) bool {
	if len(p.Class) == 0 {
		return true
	}
	for _, c := range p.Class {
		if c.Code == typ {
			return true
		}
	}
	return false
}

// rule compiles the rules for one type. Precedence (docs/access-control.md §3.10): a nested
// provision (more specific) overrides its Consent's root provision; at the same level deny
// beats permit; Consents combine by deny: a resource is visible only when every applicable
// Consent lets it through.
func (r *consentRules) rule(typ string) (*typeRule, error) {
	if r.failClosed {
		return &typeRule{hidden: true}, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if tr, ok := r.byType[typ]; ok {
		return tr, nil
	}
	out := &typeRule{}
	for _, doc := range r.docs {
		tr, err := r.compileDoc(doc, typ)
		if err != nil {
			return nil, err
		}
		if tr.hidden {
			out = &typeRule{hidden: true}
			break
		}
		out.clauses = append(out.clauses, tr.clauses...)
	}
	r.byType[typ] = out
	return out, nil
}

func (r *consentRules) compileDoc(doc *consentDoc, typ string) (*typeRule, error) {
	root := doc.Provision
	base := "permit"
	if r.e.provisionApplies(r.subj, r.patient, root) && classCovers(root, typ) {
		if len(root.SecurityLabel) > 0 || root.DataPeriod != nil {
			// A root that selects data by label or period is a child without siblings.
			return r.combine(typ, root.Type, nil, []*consentProvDoc{root})
		}
		base = root.Type
	}
	var kids []*consentProvDoc
	for _, c := range root.Provision {
		if r.e.provisionApplies(r.subj, r.patient, c) && classCovers(c, typ) {
			kids = append(kids, c)
		}
	}
	return r.combine(typ, base, kids, nil)
}

// combine expresses base (permit or deny everything of typ) with the exceptions kids, plus
// extra provisions applied as denials or permits on their own.
func (r *consentRules) combine(typ, base string, kids, only []*consentProvDoc) (*typeRule, error) {
	tr := &typeRule{}
	var permits, denies []*consentProvDoc
	for _, k := range append(kids, only...) {
		if k.Type == "permit" {
			permits = append(permits, k)
		} else {
			denies = append(denies, k)
		}
	}
	if only != nil {
		// A data-selecting root: deny → hide what it selects; permit → show only that.
		base = "permit"
		if len(permits) > 0 {
			base = "deny"
		}
	}
	if base == "deny" {
		// Visible: what some permit selects (OR). One permit, or permits that select by
		// label only, are expressible; otherwise the first permit alone counts (a subset:
		// safe).
		if len(permits) == 0 {
			return &typeRule{hidden: true}, nil
		}
		whole := false
		var labels []string
		labelOnly := true
		for _, p := range permits {
			if len(p.SecurityLabel) == 0 && p.DataPeriod == nil {
				whole = true
			}
			if p.DataPeriod != nil || len(p.SecurityLabel) == 0 {
				labelOnly = false
			}
			for _, l := range p.SecurityLabel {
				labels = append(labels, l.System+"|"+l.Code)
			}
		}
		switch {
		case whole:
		case labelOnly:
			cl, err := r.clause(typ, "_security", strings.Join(labels, ","))
			if err != nil {
				return nil, err
			}
			tr.clauses = append(tr.clauses, cl)
		default:
			cls, err := r.selects(typ, permits[0])
			if err != nil {
				return nil, err
			}
			tr.clauses = append(tr.clauses, cls...)
		}
	}
	for _, d := range denies {
		switch {
		case len(d.SecurityLabel) > 0:
			// NOT(label AND period) is wider than NOT label: hiding every labelled
			// resource, whatever its date, is the safe side.
			var vals []string
			for _, l := range d.SecurityLabel {
				vals = append(vals, l.System+"|"+l.Code)
			}
			cl, err := r.clause(typ, "_security:not", strings.Join(vals, ","))
			if err != nil {
				return nil, err
			}
			tr.clauses = append(tr.clauses, cl)
		case d.DataPeriod != nil:
			var vals []string
			if d.DataPeriod.Start != "" {
				vals = append(vals, "lt"+d.DataPeriod.Start)
			}
			if d.DataPeriod.End != "" {
				vals = append(vals, "gt"+d.DataPeriod.End)
			}
			if len(vals) == 0 {
				return &typeRule{hidden: true}, nil
			}
			cl, err := r.clause(typ, "_lastUpdated", strings.Join(vals, ","))
			if err != nil {
				return nil, err
			}
			tr.clauses = append(tr.clauses, cl)
		default:
			return &typeRule{hidden: true}, nil
		}
	}
	return tr, nil
}

// selects are the clauses matching what a provision selects (label AND data period).
func (r *consentRules) selects(typ string, p *consentProvDoc) ([]search.Clause, error) {
	var out []search.Clause
	if len(p.SecurityLabel) > 0 {
		var vals []string
		for _, l := range p.SecurityLabel {
			vals = append(vals, l.System+"|"+l.Code)
		}
		cl, err := r.clause(typ, "_security", strings.Join(vals, ","))
		if err != nil {
			return nil, err
		}
		out = append(out, cl)
	}
	if p.DataPeriod != nil {
		if p.DataPeriod.Start != "" {
			cl, err := r.clause(typ, "_lastUpdated", "ge"+p.DataPeriod.Start)
			if err != nil {
				return nil, err
			}
			out = append(out, cl)
		}
		if p.DataPeriod.End != "" {
			cl, err := r.clause(typ, "_lastUpdated", "le"+p.DataPeriod.End)
			if err != nil {
				return nil, err
			}
			out = append(out, cl)
		}
	}
	return out, nil
}

func (r *consentRules) clause(typ, key, value string) (search.Clause, error) {
	return search.ParseClause(r.e.reg, []string{typ}, key, value, search.ParseOptions{BaseURL: r.e.baseURL, Now: r.e.now})
}

// consentPatient is the one patient a request is bounded to, for the Consent lookup: the
// token's patient, the patient user, the patient of $everything or of a compartment search,
// or the one patient a search names (patient=, subject=, Patient?_id=). "" when unbounded.
func (e *Engine) consentPatient(subj *subject, in Input) string {
	switch {
	case subj.patient != "":
		return subj.patient
	case subj.userPatient != "":
		return subj.userPatient
	case in.Interaction == Operation && in.Type == "Patient" && smart.ValidID(in.ID):
		return in.ID
	}
	if in.Query == nil {
		return ""
	}
	if c := in.Query.Compartment; c != nil && c.Type == "Patient" {
		return c.ID
	}
	if len(in.Query.Types) != 1 {
		return ""
	}
	typ := in.Query.Types[0]
	for _, c := range in.Query.Clauses {
		if c.Param == nil || c.Chain != nil || c.Reverse != nil || c.Modifier != "" || len(c.Values) != 1 {
			continue
		}
		v := c.Values[0]
		switch {
		case typ == "Patient" && c.Param.Code == "_id":
			return v.Code
		case (c.Param.Code == "patient" || c.Param.Code == "subject") && v.RefType == "Patient" && v.RefID != "":
			return v.RefID
		}
	}
	return ""
}

// loadConsent prepares the subject's Consent rules: those of the patient the request is
// bounded to, or, for an unbounded search, whether any patient's Consent restricts the subject
// (such searches are then refused: no query can exclude one patient's data).
func (e *Engine) loadConsent(ctx context.Context, subj *subject, in Input) error {
	if e.consents == nil || subj.p.IsBreakGlass() {
		return nil
	}
	subj.consentCache = map[string]*consentRules{}
	all, err := e.consents.ConsentPatients(ctx, MaxConsentPatients)
	if err != nil {
		return fmt.Errorf("policy: patients with consents: %w", err)
	}
	subj.consentPatients = make(map[string]bool, len(all))
	for _, id := range all {
		subj.consentPatients[id] = true
	}
	subj.consentTooMany = len(all) > MaxConsentPatients
	if p := e.consentPatient(subj, in); p != "" {
		r, err := e.consentFor(ctx, subj, p)
		if err != nil {
			return err
		}
		subj.consent = r
		subj.consentBound, subj.consentBoundID = true, p
		return nil
	}
	switch in.Interaction {
	case SearchType, SearchSystem, HistoryType, HistorySystem:
	default:
		return nil
	}
	if subj.consentTooMany {
		subj.consentUnbounded = true
		return nil
	}
	ids := slices.Sorted(maps.Keys(subj.consentPatients))
	for _, id := range ids {
		r, err := e.consentFor(ctx, subj, id)
		if err != nil {
			return err
		}
		if r != nil {
			subj.consentOthers = append(subj.consentOthers, r)
		}
	}
	return nil
}

// exclusionClauses bound an unbounded search of typ away from the patients whose Consent
// restricts the subject's access to typ: for every Patient compartment parameter of typ,
// param:not=Patient/a,Patient/b (ANDed: the resource is in none of their compartments). Those
// patients' data is then reached only by a search bounded to one of them, where their Consent
// is compiled exactly. ok is false when typ cannot be bounded this way (Patient itself).
func (e *Engine) exclusionClauses(subj *subject, typ string) (cl []search.Clause, ok bool, err error) {
	if subj.consentUnbounded {
		return nil, false, nil
	}
	return e.excludePatients(subj.consentOthers, typ)
}

// excludePatients are the clauses that keep a search of typ out of the compartments of the
// patients whose rules restrict typ; ok is false when typ cannot be bounded this way.
func (e *Engine) excludePatients(rules []*consentRules, typ string) (cl []search.Clause, ok bool, err error) {
	var refs []string
	for _, r := range rules {
		tr, err := r.rule(typ)
		if err != nil {
			return nil, false, err
		}
		if tr.restricts() {
			refs = append(refs, "Patient/"+r.patient)
		}
	}
	if len(refs) == 0 {
		return nil, true, nil
	}
	params := e.compartmentParams[typ]
	if typ == "Patient" || len(params) == 0 {
		return nil, false, nil
	}
	for _, code := range params {
		c, err := search.ParseClause(e.reg, []string{typ}, code, strings.Join(refs, ","), search.ParseOptions{BaseURL: e.baseURL, Now: e.now})
		if err != nil {
			return nil, false, err
		}
		// Built here, never parsed from a client: :not on a reference is not an R4 search
		// modifier, but the stores and the Matcher evaluate it as "no value matches".
		c.Modifier = "not"
		cl = append(cl, c)
	}
	return cl, true, nil
}

// consentGoverns reports whether patients' Consents restrict typ: the Patient compartment's
// types except Consent itself. The directives stay reachable, under scopes and labels, to
// whoever must read or withdraw them (the patient, a privacy officer's tool), also under an
// opt-in Consent that denies everything else.
func (e *Engine) consentGoverns(typ string) bool { return e.compartment[typ] && typ != "Consent" }

// consentTypeRule is the Consent rule of typ for an access bound to one patient; nil when the
// Consent does not restrict it (or the type is not the patient's data).
func (e *Engine) consentTypeRule(a *access, typ string) (*typeRule, error) {
	if a.consent == nil || !e.consentGoverns(typ) {
		return nil, nil
	}
	return a.consent.rule(typ)
}

// consentPermits checks one body against the Consents of the patients it belongs to.
func (e *Engine) consentPermits(a *access, typ string, body []byte) (bool, Reason, error) {
	if e.consents == nil || a.subj == nil || a.subj.p.IsBreakGlass() || !e.consentGoverns(typ) {
		return true, "", nil
	}
	// Every patient whose compartment holds the body: the one the request is bounded to, and
	// any other (an _include of another patient's resource, a resource in two compartments).
	var rules []*consentRules
	if a.consent != nil {
		rules = append(rules, a.consent)
	}
	if !a.subj.consentTooMany && !a.subj.othersHaveConsents() {
		// No other patient has a Consent: nothing to look up from the body.
		return e.checkRules(rules, typ, body)
	}
	ids, err := e.patientsOf(typ, body)
	if err != nil {
		return false, ReasonEvaluationError, err
	}
	for _, id := range ids {
		if a.consent != nil && id == a.consent.patient {
			continue
		}
		r, err := e.consentFor(a.subj.ctx, a.subj, id)
		if err != nil {
			return false, ReasonEvaluationError, err
		}
		if r != nil {
			rules = append(rules, r)
		}
	}
	return e.checkRules(rules, typ, body)
}

// checkRules checks a body against the Consent rules of its patients.
func (e *Engine) checkRules(rules []*consentRules, typ string, body []byte) (bool, Reason, error) {
	for _, r := range rules {
		tr, err := r.rule(typ)
		if err != nil {
			return false, ReasonEvaluationError, err
		}
		if tr.hidden {
			return false, ReasonConsentDenied, nil
		}
		if len(tr.clauses) > 0 {
			ok, err := e.matcher.Matches(typ, body, tr.clauses)
			if err != nil {
				return false, ReasonEvaluationError, fmt.Errorf("policy: consent check of %s: %w", typ, err)
			}
			if !ok {
				return false, ReasonConsentDenied, nil
			}
		}
	}
	return true, "", nil
}

// patientsOf lists the patients whose compartment holds the body (CompartmentLister), or
// fails when the Membership cannot list them (fail closed).
func (e *Engine) patientsOf(typ string, body []byte) ([]string, error) {
	l, ok := e.membership.(CompartmentLister)
	if !ok {
		return nil, errors.New("policy: consents need a Membership that lists compartments")
	}
	ids, err := l.Compartments("Patient", typ, body)
	if err != nil {
		return nil, err
	}
	return slices.Compact(ids), nil
}

// consentClauses are the clauses a patient's Consent adds to a search of typ bounded to that
// patient: the Consent's selection, or a clause no resource matches when it hides the type.
func (e *Engine) consentClauses(a *access, typ string) ([]search.Clause, error) {
	if a.subj != nil && !a.subj.consentBound && e.consentGoverns(typ) && (a.subj.consentUnbounded || len(a.subj.consentOthers) > 0) {
		cl, ok, err := e.exclusionClauses(a.subj, typ)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, errConsentUnbounded
		}
		return cl, nil
	}
	tr, err := e.consentTypeRule(a, typ)
	if err != nil || tr == nil || !tr.restricts() {
		return nil, err
	}
	if tr.hidden {
		cl, err := search.ParseClause(e.reg, []string{typ}, "_id", noMatchID, search.ParseOptions{BaseURL: e.baseURL, Now: e.now})
		if err != nil {
			return nil, err
		}
		return []search.Clause{cl}, nil
	}
	return slices.Clone(tr.clauses), nil
}

// othersHaveConsents reports whether a patient other than the one the request is bound to has
// a Consent.
func (s *subject) othersHaveConsents() bool {
	for id := range s.consentPatients {
		if !s.consentBound || id != s.consentBoundID {
			return true
		}
	}
	return false
}
