package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/fhir/definitions"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/smart"
)

// Matcher decides whether a resource body satisfies every clause (the clauses are ANDed, the
// values of a clause ORed), with the same semantics a backend gives the clauses in a search.
// The search package's index extraction implements it.
type Matcher interface {
	Matches(resourceType string, body []byte, clauses []search.Clause) (bool, error)
}

// Membership decides whether a resource body is in a compartment (Patient/123), with the same
// semantics a backend gives search.Query.Compartment. The compartment package implements it.
type Membership interface {
	InCompartment(comp search.CompartmentRef, resourceType string, body []byte) (bool, error)
}

// Config builds an Engine. Registry, Matcher and Membership are required.
type Config struct {
	// Registry resolves the parameters of granular scope constraints.
	Registry *search.Registry
	// Matcher checks bodies against granular scope constraints.
	Matcher Matcher
	// Membership checks bodies against the patient compartment.
	Membership Membership
	// BaseURL is the FHIR base, so that constraint values that are absolute references to this
	// server compile like relative ones.
	BaseURL string
	// SharedTypes are the types outside the Patient compartment that patient/ scopes may reach;
	// nil means DefaultSharedTypes. They are also the only types user/ scopes reach in a token
	// that mixes patient/ and user/ scopes.
	SharedTypes []string
	// ExtraCompartmentTypes are types that the R4 Patient CompartmentDefinition leaves out but
	// that hold one patient's data and are bounded to the patient like compartment types; nil
	// means DefaultExtraCompartmentTypes. The Membership implementation and the backends'
	// compartment search must count them in the same way (Device through its patient element).
	ExtraCompartmentTypes []string
	// Now is the clock (date constraints with the ap prefix); nil means time.Now.
	Now func() time.Time
	// UserAccess bounds the user/ scopes of a Practitioner or PractitionerRole user with the
	// user's own permissions; nil means AllPatients (every patient, the single-tenant default).
	UserAccess UserAccess
	// MaxUserPatients caps the patients a patient-set strategy may return; above it requests are
	// refused (user-access-too-broad). 0 means DefaultMaxUserPatients.
	MaxUserPatients int
	// DenyAsForbidden answers refusals of resources outside the token's access (another
	// patient's, a granular mismatch) 403 instead of 404 (config policy.hide_existence: false).
	// The default hides existence.
	DenyAsForbidden bool
	// Labels enforces security labels (meta.security) against the token's clearance; nil
	// enforces none. See labels.go and docs/access-control.md §3.9.
	Labels *LabelPolicy
	// Consents supplies the active patient-privacy Consents of a patient; nil enforces none.
	// See consent.go and docs/access-control.md §3.10.
	Consents ConsentSource
	// Shadow, when set, is a second rule set evaluated beside this one in audit-only mode: its
	// decision is recorded in Decision.Shadow and never enforced. Its Registry, Matcher and
	// Membership default to this Config's; it cannot have a shadow of its own.
	Shadow *Config
}

// Engine evaluates access decisions. It is immutable and safe for concurrent use; to change the
// configuration build a new Engine and swap it (atomic.Pointer).
type Engine struct {
	reg         *search.Registry
	matcher     Matcher
	membership  Membership
	baseURL     string
	now         func() time.Time
	compartment map[string]bool // types in the Patient compartment
	shared      map[string]bool
	// compartmentParams are the Patient compartment parameters of each type.
	compartmentParams map[string][]string
	// practParams: reference type (Practitioner, PractitionerRole) → resource type →
	// Practitioner compartment parameters that can point at it.
	practParams map[string]map[string][]*search.Param
	userAccess  UserAccess
	maxPatients int
	revealDeny  bool
	shadow      *Engine
	labels      *LabelPolicy
	redact      map[label]map[string][]string
	sensitivity []string
	consents    ConsentSource
}

// New builds an Engine.
func New(cfg Config) (*Engine, error) {
	e, err := newEngine(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Shadow != nil {
		sc := *cfg.Shadow
		if sc.Shadow != nil {
			return nil, errors.New("policy: a shadow rule set cannot have a shadow of its own")
		}
		if sc.Registry == nil {
			sc.Registry = cfg.Registry
		}
		if sc.Matcher == nil {
			sc.Matcher = cfg.Matcher
		}
		if sc.Membership == nil {
			sc.Membership = cfg.Membership
		}
		if sc.Now == nil {
			sc.Now = cfg.Now
		}
		if sc.Labels == nil {
			sc.Labels = cfg.Labels
		}
		if sc.Consents == nil {
			sc.Consents = cfg.Consents
		}
		if e.shadow, err = newEngine(sc); err != nil {
			return nil, fmt.Errorf("policy: shadow rule set: %w", err)
		}
	}
	return e, nil
}

func newEngine(cfg Config) (*Engine, error) {
	if cfg.Registry == nil || cfg.Matcher == nil || cfg.Membership == nil {
		return nil, errors.New("policy: Registry, Matcher and Membership are required")
	}
	if cfg.MaxUserPatients < 0 {
		return nil, errors.New("policy: MaxUserPatients must not be negative")
	}
	comp, compParams, err := patientCompartment()
	if err != nil {
		return nil, err
	}
	practParams, err := practitionerParams(cfg.Registry)
	if err != nil {
		return nil, err
	}
	shared := cfg.SharedTypes
	if shared == nil {
		shared = DefaultSharedTypes
	}
	extra := cfg.ExtraCompartmentTypes
	if extra == nil {
		extra = DefaultExtraCompartmentTypes
	}
	for _, t := range extra {
		if !smart.IsResourceType(t) || comp[t] || slices.Contains(shared, t) {
			return nil, fmt.Errorf("policy: extra compartment type %q is not a resource type outside the compartment and the shared types", t)
		}
		comp[t] = true
		if _, ok := cfg.Registry.Lookup(t, "patient"); ok {
			compParams[t] = []string{"patient"}
		}
	}
	e := &Engine{
		compartmentParams: compParams,
		practParams:       practParams,
		userAccess:        cfg.UserAccess,
		maxPatients:       cfg.MaxUserPatients,
		revealDeny:        cfg.DenyAsForbidden,
		reg:               cfg.Registry,
		matcher:           cfg.Matcher,
		membership:        cfg.Membership,
		baseURL:           cfg.BaseURL,
		now:               cfg.Now,
		compartment:       comp,
		shared:            map[string]bool{},
	}
	if e.now == nil {
		e.now = time.Now
	}
	if err := e.setLabels(cfg.Labels); err != nil {
		return nil, err
	}
	e.consents = cfg.Consents
	if e.userAccess == nil {
		e.userAccess = AllPatients{}
	}
	if e.maxPatients == 0 {
		e.maxPatients = DefaultMaxUserPatients
	}
	for _, t := range shared {
		if !smart.IsResourceType(t) {
			return nil, fmt.Errorf("policy: shared type %q is not an R4 resource type", t)
		}
		if comp[t] {
			return nil, fmt.Errorf("policy: shared type %s is in the Patient compartment", t)
		}
		e.shared[t] = true
	}
	return e, nil
}

// InPatientCompartment reports whether typ is one of the Patient compartment's types.
func (e *Engine) InPatientCompartment(typ string) bool { return e.compartment[typ] }

// Decision is the answer to one Input.
type Decision struct {
	// Allow is true only when the request may proceed.
	Allow bool
	// Reasons explain the decision, most important first.
	Reasons []Reason
	// NotFound asks the FHIR API to answer a denial as 404 Not Found, not 403, so that the
	// client cannot tell a resource it may not see from one that does not exist. The reason
	// is still recorded in the audit log.
	NotFound bool
	// Detail is a human-readable explanation for the log (never shown to the client).
	Detail string
	// Narrowing constrains the search (or history, or $everything) that the request runs;
	// nil when there is nothing to add. The FHIR API must apply it to every page.
	Narrowing *Narrowing
	// Filter checks every resource the request returns; set whenever Allow is true (nil only
	// for the public CapabilityStatement).
	Filter *ResponseFilter
	// Rule is what decided, for the log and the audit trail: for an allow the scopes that
	// granted (and user_access=<strategy> when the user's own permissions bound them); for a
	// deny the rule that refused.
	Rule string
	// Shadow is what the shadow rule set would have decided (Config.Shadow); nil without one.
	// It is never enforced: only logged and audited. Its Narrowing and Filter are nil.
	Shadow *Decision

	revealDeny bool
}

// RefusedStatus is the status for a resource the Filter refuses on a read (or an update, patch
// or delete whose stored body it refuses): 404 unless the engine was configured to answer 403
// (Config.DenyAsForbidden).
func (d Decision) RefusedStatus() int {
	if d.revealDeny {
		return 403
	}
	return 404
}

// Status is the HTTP status a denial maps to (401 without a token, 404 when NotFound, 403
// otherwise), or 200 when allowed.
func (d Decision) Status() int {
	switch {
	case d.Allow:
		return 200
	case slices.Contains(d.Reasons, ReasonNoToken):
		return 401
	case d.NotFound:
		return 404
	}
	return 403
}

func deny(r Reason, format string, args ...any) Decision {
	return Decision{Reasons: []Reason{r}, Detail: fmt.Sprintf(format, args...), Rule: denyRules[r]}
}

// hidden is a denial of a resource outside the token's access: 404 unless the engine answers
// 403 (Config.DenyAsForbidden).
func (e *Engine) hidden(r Reason, format string, args ...any) Decision {
	d := deny(r, format, args...)
	d.NotFound = !e.revealDeny
	return d
}

// Evaluate decides one request. It returns an error only when a body or the user's permissions
// cannot be checked (the Matcher, Membership or UserAccess failed); the decision is then a
// denial and the FHIR API answers 500 (fail closed). With a shadow rule set, Decision.Shadow
// records what it would have decided; the shadow never changes the decision nor the error.
func (e *Engine) Evaluate(ctx context.Context, in Input) (Decision, error) {
	d, err := e.evaluate(ctx, in)
	d.revealDeny = e.revealDeny
	if e.shadow != nil {
		sd, serr := e.shadow.evaluate(ctx, in)
		if serr != nil {
			sd = Decision{Reasons: []Reason{ReasonEvaluationError}, Detail: serr.Error(), Rule: denyRules[ReasonEvaluationError]}
		}
		sd.revealDeny = e.shadow.revealDeny
		sd.Narrowing, sd.Filter, sd.Shadow = nil, nil, nil
		d.Shadow = &sd
	}
	return d, err
}

func (e *Engine) evaluate(ctx context.Context, in Input) (Decision, error) {
	if in.Interaction == Capabilities {
		// SMART-CONFORMANCE §7.1 A7: /metadata answers without a token.
		return Decision{Allow: true, Reasons: []Reason{ReasonPublic}}, nil
	}
	if in.Principal == nil {
		return deny(ReasonNoToken, "no access token"), nil
	}
	subj, r, detail := e.subjectOf(in.Principal)
	if r != "" {
		return deny(r, "%s", detail), nil
	}
	subj.ctx = ctx
	subj.labels = e.labelsFor(in.Principal)
	if err := e.loadConsent(ctx, subj, in); err != nil {
		d := deny(ReasonEvaluationError, "%v", err)
		d.Rule = "consent"
		return d, err
	}
	if subj.needsReach {
		rc, err := e.userReach(ctx, in.Principal.FHIRUser)
		switch {
		case errors.Is(err, errTooBroad):
			d := deny(ReasonUserAccessTooBroad, "%v", err)
			d.Rule = "user_access=" + e.userAccess.Name()
			return d, nil
		case err != nil:
			d := deny(ReasonEvaluationError, "%v", err)
			d.Rule = "user_access=" + e.userAccess.Name()
			return d, err
		}
		subj.reach = rc
	}
	if in.Type != "" && !smart.IsResourceType(in.Type) {
		return deny(ReasonInvalidInput, "%q is not a resource type", in.Type), nil
	}
	switch in.Interaction {
	case Read, VRead, HistoryInstance:
		return e.evaluateRead(subj, in)
	case SearchType, SearchCompartment, SearchSystem:
		return e.evaluateSearch(subj, in)
	case HistoryType, HistorySystem:
		return e.evaluateHistory(subj, in)
	case Create, Update, Patch, Delete:
		return e.evaluateWrite(subj, in)
	case Operation:
		return e.evaluateOperation(subj, in)
	}
	return deny(ReasonInteractionUnknown, "interaction %q is not modelled", in.Interaction), nil
}

// subject is a principal whose scopes passed the token-level checks.
type subject struct {
	p *authn.Principal
	// patient is the patient every patient/ scope is bound to (set when the token has
	// patient/ scopes).
	patient string
	// userPatient is the patient user/ scopes are bound to when the signed-in user is a
	// Patient (fhirUser Patient/123): a patient user may see only their own record, whatever
	// user/ scopes the authorization server granted.
	userPatient string
	// mixed is true when patient/ and user/ scopes share the token: user/ scopes then reach
	// only the shared types.
	mixed bool
	// needsReach is true for a Practitioner or PractitionerRole user with user/ scopes (not
	// mixed): the UserAccess strategy bounds them. reach is its answer; nil reaches every
	// patient.
	needsReach bool
	reach      *reach
	// labels are the security labels the subject may not see (nil: none hidden).
	labels *labelRules
	// consent holds the Consent rules of the patient the subject is bound to, and ctx is the
	// request's context for the Consent lookups of the ResponseFilter.
	consent *consentRules
	ctx     context.Context
	// consentBound: the request is bounded to one patient (consent holds its rules, nil when
	// none apply); consentUnbounded: an unbounded search that some patient's Consent restricts.
	consentBound     bool
	consentBoundID   string
	consentUnbounded bool
	// consentOthers are, for an unbounded request, the Consent rules of every patient whose
	// Consent applies to the subject (their data is excluded from unbounded searches).
	consentOthers []*consentRules
	// consentPatients are the patients that have Consents (consentTooMany: more than
	// MaxConsentPatients, every body is then looked up).
	consentPatients map[string]bool
	consentTooMany  bool
	consentMu       sync.Mutex
	consentCache    map[string]*consentRules
}

// bound reports whether some scopes of the subject are bound to a patient.
func (s *subject) bound() bool { return s.patient != "" || s.userPatient != "" }

// subjectOf applies the token-level rules: patient/ scopes need a patient, user/ scopes need a
// fhirUser, system/ scopes stand alone. Any violation refuses the whole token.
func (e *Engine) subjectOf(p *authn.Principal) (*subject, Reason, string) {
	hasPatient := p.Scopes.HasContext(smart.ContextPatient)
	hasUser := p.Scopes.HasContext(smart.ContextUser)
	hasSystem := p.Scopes.HasContext(smart.ContextSystem)
	switch {
	case hasSystem && (hasPatient || hasUser):
		return nil, ReasonMixedContext, "system/ scopes cannot be combined with patient/ or user/ scopes"
	case hasPatient && !smart.ValidID(p.Patient):
		// SECURITY-LESSONS #1: a patient scope without a patient fails closed.
		return nil, ReasonPatientContextMissing, "patient/ scopes without a patient in context"
	}
	s := &subject{p: p, mixed: hasPatient && hasUser}
	if hasPatient {
		s.patient = p.Patient
	}
	if hasUser {
		typ, id, ok := smart.SplitReference(p.FHIRUser)
		if !ok {
			return nil, ReasonFHIRUserMissing, "user/ scopes without a fhirUser"
		}
		switch typ {
		case "Practitioner", "PractitionerRole":
			s.needsReach = !s.mixed
		case "Patient":
			s.userPatient = id
		default:
			// RelatedPerson and Person act for patients through links the engine does not
			// model yet: refuse rather than grant compartment-free access.
			return nil, ReasonFHIRUserUnsupported, fmt.Sprintf("user/ scopes for a %s user are not modelled", typ)
		}
	}
	return s, "", ""
}

// access is what a subject may do with one resource type for some permissions.
type access struct {
	typ string
	// compartment, when set, is the compartment every resource must be in.
	compartment *search.CompartmentRef
	// unconstrained is true when a scope without constraints permits the type; otherwise
	// alternatives hold, per granular scope, the clauses a resource must all match (any one
	// alternative suffices).
	unconstrained bool
	alternatives  [][]search.Clause
	// user, when set, is the user's own reach every resource must be within (user/ scopes of a
	// Practitioner user under a bounding strategy).
	user *reach
	// scopes are the scopes that permit the type (Decision.Rule).
	scopes []string
	// labels are the labels hidden from the subject; consent the Consent rules of its patient.
	labels  *labelRules
	consent *consentRules
	subj    *subject
}

// constrained reports whether a resource must be checked beyond its type.
func (a *access) constrained() bool { return a.compartment != nil || a.user != nil || !a.unconstrained }

// rule is the Decision.Rule of an allow through a.
func (a *access) rule() string {
	r := strings.Join(a.scopes, " ")
	if a.user != nil {
		r += " user_access=" + a.user.strategy
	}
	return r
}

// accessFor finds the scopes of subj that permit any of perms on typ, and what they require of
// a resource. The reason is set (and access unusable) when no scope permits it.
func (e *Engine) accessFor(subj *subject, typ string, perms smart.Perms) (access, Reason, string) {
	a := access{typ: typ, labels: subj.labels, consent: subj.consent, subj: subj}
	typeNamed := false
	userBound := false
	var why Reason
	var whyDetail string
	usable := 0
	for _, sc := range subj.p.Scopes {
		if !sc.AppliesTo(typ) {
			continue
		}
		typeNamed = true
		if sc.Perms&perms == 0 {
			continue
		}
		switch sc.Context {
		case smart.ContextPatient:
			if !e.compartment[typ] && !e.shared[typ] {
				why, whyDetail = ReasonTypeOutsidePatientContext, fmt.Sprintf("%s is neither in the Patient compartment nor a shared type", typ)
				continue
			}
		case smart.ContextUser:
			if subj.mixed && !e.shared[typ] {
				why, whyDetail = ReasonMixedContext, fmt.Sprintf("user/ scopes next to patient/ scopes do not reach %s", typ)
				continue
			}
			if subj.userPatient != "" && !e.compartment[typ] && !e.shared[typ] {
				why, whyDetail = ReasonTypeOutsidePatientContext, fmt.Sprintf("a patient user's user/ scopes do not reach %s", typ)
				continue
			}
			if subj.reach != nil && !e.shared[typ] {
				if ok, r, detail := e.reaches(subj.reach, typ); !ok {
					why, whyDetail = r, detail
					continue
				}
				userBound = true
			}
		case smart.ContextSystem:
		default:
			continue
		}
		if sc.Granular() {
			clauses, err := e.compile(typ, sc.Constraints)
			if err != nil {
				why, whyDetail = ReasonGranularUnsupported, fmt.Sprintf("scope %s: %v", sc, err)
				continue
			}
			a.alternatives = append(a.alternatives, clauses)
		} else {
			a.unconstrained = true
		}
		if e.compartment[typ] {
			switch {
			case sc.Context == smart.ContextPatient:
				a.compartment = &search.CompartmentRef{Type: "Patient", ID: subj.patient}
			case sc.Context == smart.ContextUser && subj.userPatient != "":
				a.compartment = &search.CompartmentRef{Type: "Patient", ID: subj.userPatient}
			}
		}
		a.scopes = append(a.scopes, sc.String())
		usable++
	}
	if userBound {
		a.user = subj.reach
	}
	if usable == 0 {
		switch {
		case why != "":
			return a, why, whyDetail
		case typeNamed:
			return a, ReasonScopeMissingInteraction, fmt.Sprintf("no scope grants %s on %s", perms, typ)
		default:
			return a, ReasonScopeMissingType, fmt.Sprintf("no scope names %s", typ)
		}
	}
	if a.unconstrained {
		a.alternatives = nil
	}
	return a, "", ""
}

// compile turns the constraints of one granular scope into search clauses for typ. Only plain
// clauses are accepted: the scope grammar already refuses modifiers and chains, and the check
// here keeps that true whatever the parser does.
func (e *Engine) compile(typ string, cs []smart.Constraint) ([]search.Clause, error) {
	out := make([]search.Clause, 0, len(cs))
	for _, c := range cs {
		cl, err := search.ParseClause(e.reg, []string{typ}, c.Param, c.Value, search.ParseOptions{BaseURL: e.baseURL, Now: e.now})
		if err != nil {
			return nil, err
		}
		if cl.Param == nil || cl.Chain != nil || cl.Reverse != nil || cl.Modifier != "" || len(cl.Values) == 0 {
			return nil, fmt.Errorf("constraint %s=%s is not a plain search clause", c.Param, c.Value)
		}
		out = append(out, cl)
	}
	return out, nil
}

// permits checks one body against an access: its type, the compartment and the granular
// alternatives. The reason says why not.
func (e *Engine) permits(a *access, typ string, body []byte) (bool, Reason, error) {
	ok, redact, why, err := e.checkBody(a, typ, body)
	if ok && redact != nil {
		return false, ReasonRedacted, nil
	}
	return ok, why, err
}

// checkBody is permits for what a response may return: a body that the labels let out only
// once redacted passes, with the element paths to remove.
func (e *Engine) checkBody(a *access, typ string, body []byte) (bool, []string, Reason, error) {
	if len(body) == 0 {
		if a.constrained() {
			return false, nil, ReasonInvalidInput, nil
		}
		return true, nil, "", nil
	}
	var h struct {
		ResourceType string `json:"resourceType"`
	}
	if err := json.Unmarshal(body, &h); err != nil || h.ResourceType != typ {
		return false, nil, ReasonInvalidInput, nil
	}
	var redact []string
	if a.labels != nil {
		visible, paths, err := a.labels.check(typ, body)
		if err != nil {
			return false, nil, ReasonEvaluationError, err
		}
		if !visible {
			return false, nil, ReasonLabelAboveClearance, nil
		}
		redact = paths
	}
	ok, why, err := e.permitsUnlabelled(a, typ, body)
	return ok, redact, why, err
}

// permitsUnlabelled checks everything but the labels: Consent, compartment, user access and
// granular scopes.
func (e *Engine) permitsUnlabelled(a *access, typ string, body []byte) (bool, Reason, error) {
	if ok, why, err := e.consentPermits(a, typ, body); err != nil || !ok {
		return false, why, err
	}
	if a.compartment != nil {
		in, err := e.membership.InCompartment(*a.compartment, typ, body)
		if err != nil {
			return false, ReasonEvaluationError, fmt.Errorf("policy: compartment membership of %s: %w", typ, err)
		}
		if !in {
			return false, ReasonOutsideCompartment, nil
		}
	}
	if a.user != nil {
		in, err := e.inReach(a.user, typ, body)
		if err != nil {
			return false, ReasonEvaluationError, fmt.Errorf("policy: user_access=%s check of %s: %w", a.user.strategy, typ, err)
		}
		if !in {
			return false, ReasonOutsideUserAccess, nil
		}
	}
	if a.unconstrained {
		return true, "", nil
	}
	for _, alt := range a.alternatives {
		ok, err := e.matcher.Matches(typ, body, alt)
		if err != nil {
			return false, ReasonEvaluationError, fmt.Errorf("policy: granular constraints on %s: %w", typ, err)
		}
		if ok {
			return true, "", nil
		}
	}
	return false, ReasonGranularMismatch, nil
}

func allowReasons(a *access) []Reason {
	rs := []Reason{ReasonScopeGranted}
	if a.compartment != nil {
		rs = append(rs, ReasonCompartmentNarrowed)
	}
	if a.user != nil {
		rs = append(rs, ReasonUserAccessNarrowed)
	}
	if !a.unconstrained {
		rs = append(rs, ReasonGranularNarrowed)
	}
	return rs
}

// allow is the decision that a permits the request.
func allow(a *access) Decision {
	return Decision{Allow: true, Reasons: allowReasons(a), Rule: a.rule()}
}

// refused is the denial of a body that a does not permit.
func (e *Engine) refused(a *access, why Reason, hide bool, format string, args ...any) Decision {
	var d Decision
	if hide {
		d = e.hidden(why, format, args...)
	} else {
		d = deny(why, format, args...)
	}
	if a.user != nil && why == ReasonOutsideUserAccess {
		d.Rule = "user_access=" + a.user.strategy
	} else if why == ReasonGranularMismatch {
		d.Rule = strings.Join(a.scopes, " ")
	}
	return d
}

func (e *Engine) evaluateRead(subj *subject, in Input) (Decision, error) {
	if in.Type == "" || !smart.ValidID(in.ID) {
		return deny(ReasonInvalidInput, "%s needs a resource type and id", in.Interaction), nil
	}
	a, r, detail := e.accessFor(subj, in.Type, interactionPerms[in.Interaction])
	if r != "" {
		return deny(r, "%s", detail), nil
	}
	f := e.newFilter(subj, interactionPerms[in.Interaction])
	f.only = in.Type // a read returns exactly one resource of the type read
	d := allow(&a)
	d.Filter = f
	if in.Resource != nil {
		// A read may return the resource redacted: the Filter redacts what it releases.
		ok, _, why, err := e.checkBody(&a, in.Type, in.Resource)
		if err != nil {
			return e.hidden(why, "%v", err), err
		}
		if !ok {
			return e.refused(&a, why, true, "%s/%s is not within the token's access", in.Type, in.ID), nil
		}
	}
	return d, nil
}

func (e *Engine) evaluateWrite(subj *subject, in Input) (Decision, error) {
	perm := interactionPerms[in.Interaction]
	if in.Type == "" || (in.Interaction != Create && !smart.ValidID(in.ID)) {
		return deny(ReasonInvalidInput, "%s needs a resource type and id", in.Interaction), nil
	}
	a, r, detail := e.accessFor(subj, in.Type, perm)
	if r != "" {
		return deny(r, "%s", detail), nil
	}
	// The stored resource must be one the token may act on; otherwise answer as if it did not
	// exist (a patient token must not learn that another patient's resource exists).
	if in.Interaction != Create && in.Current != nil {
		ok, why, err := e.permits(&a, in.Type, in.Current)
		if err != nil {
			return e.hidden(why, "%v", err), err
		}
		if !ok {
			return e.refused(&a, why, why != ReasonRedacted, "the stored %s/%s is not within the token's access", in.Type, in.ID), nil
		}
	}
	if in.Interaction == Delete {
		if in.Current == nil && a.constrained() {
			// Without the stored body nothing proves the resource is the patient's (or
			// matches the granular scope): refuse, as not found.
			return e.hidden(ReasonInvalidInput, "delete of %s/%s under a constrained scope without the stored resource", in.Type, in.ID), nil
		}
	} else {
		// The new body must stay (or land) within the token's access: a patient token cannot
		// create or move a resource into another patient's compartment, nor out of the
		// granted categories.
		if len(in.Resource) == 0 {
			return deny(ReasonInvalidInput, "%s without a body", in.Interaction), nil
		}
		ok, why, err := e.permits(&a, in.Type, in.Resource)
		if err != nil {
			return deny(why, "%v", err), err
		}
		if !ok {
			return e.refused(&a, why, false, "the new %s is not within the token's access", in.Type), nil
		}
	}
	d := allow(&a)
	d.Filter = e.newFilter(subj, perm|smart.PermRead)
	return d, nil
}

// searchPerms are what a resource in a search result needs: s for the matches (checked at
// Evaluate for the searched types) and r or s for everything else (_include, _revinclude).
const searchPerms = smart.PermSearch | smart.PermRead

func (e *Engine) evaluateSearch(subj *subject, in Input) (Decision, error) {
	q := in.Query
	if q == nil {
		return deny(ReasonInvalidInput, "a search without a query"), nil
	}
	types := q.Types
	switch in.Interaction {
	case SearchType:
		if in.Type == "" || len(types) != 1 || types[0] != in.Type {
			return deny(ReasonInvalidInput, "type search of %q with query types %v", in.Type, types), nil
		}
	case SearchCompartment:
		if q.Compartment == nil || len(types) == 0 {
			return deny(ReasonInvalidInput, "compartment search without a compartment or types"), nil
		}
	case SearchSystem:
		if in.Type != "" {
			return deny(ReasonInvalidInput, "system search with a type"), nil
		}
	}
	for _, t := range types {
		if !smart.IsResourceType(t) {
			return deny(ReasonInvalidInput, "%q is not a resource type", t), nil
		}
	}
	if subj.labels.queryUsesRedacted(q) {
		subj.labels = subj.labels.strict()
	}
	n, d := e.narrowing(subj, types, smart.PermSearch)
	if !d.Allow {
		return d, nil
	}
	// A compartment the client names must be the token's own (Patient/other/Observation).
	if n.Compartment != nil && q.Compartment != nil && *q.Compartment != *n.Compartment {
		return deny(ReasonOutsideCompartment, "compartment %s/%s is not the token's patient", q.Compartment.Type, q.Compartment.ID), nil
	}
	for _, c := range q.Clauses {
		if r, detail := e.checkChain(subj, c, 0); r != "" {
			return deny(r, "%s", detail), nil
		}
	}
	d.Narrowing = n.orNil()
	if d.Narrowing == nil && hasChain(q) && n.chainsNarrowed() {
		// Narrow bounds the targets of the chains (chains.go) even when the search is not.
		d.Narrowing = n
	}
	d.Filter = e.newFilter(subj, searchPerms)
	return d, nil
}

func (e *Engine) evaluateHistory(subj *subject, in Input) (Decision, error) {
	var types []string
	if in.Interaction == HistoryType {
		if in.Type == "" {
			return deny(ReasonInvalidInput, "type history without a type"), nil
		}
		types = []string{in.Type}
	} else if in.Type != "" {
		return deny(ReasonInvalidInput, "system history with a type"), nil
	}
	n, d := e.narrowing(subj, types, smart.PermSearch)
	if !d.Allow {
		return d, nil
	}
	d.Narrowing = n.orNil()
	d.Filter = e.newFilter(subj, searchPerms)
	return d, nil
}

// narrowing computes how a search (or history) over types (empty: every type) must be bounded,
// or a denial.
func (e *Engine) narrowing(subj *subject, types []string, perm smart.Perms) (*Narrowing, Decision) {
	n := newNarrowing(e, subj, perm)
	allow := Decision{Allow: true, Reasons: []Reason{ReasonScopeGranted}}
	everyType := len(types) == 0
	if everyType {
		// Every type the token may search; with a patient in context, only the compartment's
		// types, so that one compartment bound covers them all.
		for _, t := range definitions.ResourceTypes {
			a, r, _ := e.accessFor(subj, t, perm)
			if r != "" {
				continue
			}
			if subj.bound() && a.compartment == nil {
				continue
			}
			n.Types = append(n.Types, t)
		}
		if len(n.Types) == 0 {
			return nil, deny(ReasonScopeMissingType, "no scope grants a system-wide search")
		}
		if len(n.Types) == len(definitions.ResourceTypes) {
			n.Types = nil // nothing to narrow
		}
		types = n.Types
		if types == nil {
			types = definitions.ResourceTypes
		}
	}
	var withComp, withoutComp, withUser, granular int
	consentNarrowed := false
	var scopes []string
	var user *reach
	for _, t := range types {
		a, r, detail := e.accessFor(subj, t, perm)
		if r != "" {
			return nil, deny(r, "%s", detail)
		}
		for _, sc := range a.scopes {
			if !slices.Contains(scopes, sc) {
				scopes = append(scopes, sc)
			}
		}
		if a.compartment != nil {
			withComp++
			n.Compartment = a.compartment
		} else {
			withoutComp++
		}
		if a.user != nil {
			withUser++
			user = a.user
		}
		if !a.unconstrained {
			granular++
		}
		cl, ok, err := e.searchClauses(&a, t)
		if errors.Is(err, errConsentUnbounded) {
			d := deny(ReasonConsentDenied, "a patient's Consent restricts %s: search within one patient (patient=, subject= or Patient/[id]/%s)", t, t)
			d.Rule = "consent"
			return nil, d
		}
		if err != nil {
			return nil, deny(ReasonQueryUnsupported, "cannot bound %s: %v", t, err)
		}
		if e.consentGoverns(t) && (a.consent != nil || len(subj.consentOthers) > 0) {
			consentNarrowed = true
		}
		if !ok {
			return nil, deny(ReasonGranularUnsupported, "the granular scopes on %s cannot be expressed as one search", t)
		}
		if len(cl) > 0 {
			n.Clauses[t] = cl
		}
	}
	if withComp > 0 && withoutComp > 0 {
		return nil, deny(ReasonQueryUnsupported, "the search mixes types inside and outside the patient compartment")
	}
	if withUser > 0 && len(types) > 1 {
		d := deny(ReasonQueryUnsupported, "user_access=%s cannot bound a search over several types", user.strategy)
		d.Rule = "user_access=" + user.strategy
		return nil, d
	}
	allow.Rule = strings.Join(scopes, " ")
	if user != nil {
		allow.Rule += " user_access=" + user.strategy
	}
	if len(n.Clauses) > 0 && len(types) > 1 {
		return nil, deny(ReasonGranularUnsupported, "granular scopes or Consent rules cannot bound a search over several types")
	}
	if subj.labels.searchable() {
		allow.Reasons = append(allow.Reasons, ReasonLabelsNarrowed)
	}
	if consentNarrowed {
		allow.Reasons = append(allow.Reasons, ReasonConsentNarrowed)
	}
	if subj.p.IsBreakGlass() {
		allow.Reasons = append(allow.Reasons, ReasonBreakGlass)
	}
	if n.Compartment != nil {
		allow.Reasons = append(allow.Reasons, ReasonCompartmentNarrowed)
	}
	if withUser > 0 {
		allow.Reasons = append(allow.Reasons, ReasonUserAccessNarrowed)
	}
	if granular > 0 {
		allow.Reasons = append(allow.Reasons, ReasonGranularNarrowed)
	}
	return n, allow
}

// searchClauses are the clauses to AND into a search of typ for a: the merged granular
// alternatives and the user's bound. ok is false when the granular scopes cannot be expressed;
// err when the user's bound cannot.
func (e *Engine) searchClauses(a *access, typ string) (cl []search.Clause, ok bool, err error) {
	if !a.unconstrained {
		if cl, ok = mergeAlternatives(a.alternatives); !ok {
			return nil, false, nil
		}
	}
	if a.user != nil {
		uc, err := e.userClause(a.user, typ)
		if err != nil {
			return nil, true, fmt.Errorf("user_access=%s: %w", a.user.strategy, err)
		}
		cl = append(cl, uc)
	}
	cc, err := e.consentClauses(a, typ)
	if err != nil {
		return nil, true, err
	}
	return append(cl, cc...), true, nil
}

// mergeAlternatives expresses "any one of these clause sets" as clauses to AND into a search:
// one set as is, or several sets of one clause each on the same parameter as one clause whose
// values are ORed. Anything else cannot be expressed by the query model.
func mergeAlternatives(alts [][]search.Clause) ([]search.Clause, bool) {
	switch len(alts) {
	case 0:
		return nil, false
	case 1:
		return slices.Clone(alts[0]), true
	}
	first := alts[0]
	if len(first) != 1 {
		return nil, false
	}
	merged := search.Clause{Param: first[0].Param, Modifier: first[0].Modifier}
	for _, alt := range alts {
		if len(alt) != 1 || alt[0].Param != merged.Param || alt[0].Modifier != merged.Modifier {
			return nil, false
		}
		merged.Values = append(merged.Values, alt[0].Values...)
	}
	return []search.Clause{merged}, true
}

// checkChain refuses chains and _has that probe resources the token may not search without
// bounds: every type a chain reaches must be searchable (or readable) by an unconstrained
// scope with no compartment bound. With a patient in context this refuses chains into the
// compartment's types, whose resources no query bound keeps to the patient.
func (e *Engine) checkChain(subj *subject, c search.Clause, depth int) (Reason, string) {
	if depth > search.MaxChainDepth {
		return ReasonQueryUnsupported, "chain too deep"
	}
	var next *search.Clause
	var targets []string
	switch {
	case c.Chain != nil:
		next = &c.Chain.Clause
		if c.Chain.Type != "" {
			targets = []string{c.Chain.Type}
		} else if c.Param != nil {
			targets = c.Param.Targets
		}
		if len(targets) == 0 {
			return ReasonChainNotPermitted, "a chain whose target type is unknown"
		}
	case c.Reverse != nil:
		next = &c.Reverse.Clause
		targets = []string{c.Reverse.Type}
	default:
		return "", ""
	}
	for _, t := range targets {
		a, r, _ := e.accessFor(subj, t, searchPerms)
		if r != "" || a.constrained() {
			return ReasonChainNotPermitted, fmt.Sprintf("the chain reaches %s, which the token cannot search without bounds", t)
		}
	}
	return e.checkChain(subj, *next, depth+1)
}

// evaluateOperation allows only the operations modelled here: Patient/[id]/$everything. Every
// other operation ($export, $lastn, $validate, GraphQL, ...) is refused (SECURITY-LESSONS #9).
func (e *Engine) evaluateOperation(subj *subject, in Input) (Decision, error) {
	if in.Operation != "$everything" || in.Type != "Patient" || in.ID == "" {
		return deny(ReasonOperationNotAllowed, "operation %s on %q is not allowed", in.Operation, in.Type), nil
	}
	if !smart.ValidID(in.ID) {
		return deny(ReasonInvalidInput, "bad patient id"), nil
	}
	a, r, detail := e.accessFor(subj, "Patient", smart.PermRead)
	if r != "" {
		return deny(r, "%s", detail), nil
	}
	if a.compartment != nil && in.ID != a.compartment.ID {
		return e.hidden(ReasonOutsideCompartment, "$everything of Patient/%s is not the token's patient", in.ID), nil
	}
	reasons := []Reason{ReasonScopeGranted, ReasonCompartmentNarrowed}
	if a.user != nil {
		// The patient must be within the user's reach: in the set, or (Practitioner
		// compartment) its stored body must reference the user.
		ok, err := e.everythingInReach(&a, in)
		if err != nil {
			return e.hidden(ReasonEvaluationError, "%v", err), err
		}
		if !ok {
			return e.refused(&a, ReasonOutsideUserAccess, true, "$everything of Patient/%s is outside user_access=%s", in.ID, a.user.strategy), nil
		}
		reasons = append(reasons, ReasonUserAccessNarrowed)
	}
	comp := &search.CompartmentRef{Type: "Patient", ID: in.ID}
	n := newNarrowing(e, subj, searchPerms)
	n.Compartment = comp
	return Decision{
		Allow:     true,
		Reasons:   reasons,
		Narrowing: n,
		Filter:    e.newFilter(subj, searchPerms),
		Rule:      a.rule(),
	}, nil
}

// everythingInReach reports whether the patient of $everything is within the user's reach: in
// the patient set, or, for the Practitioner compartment, a stored Patient body (Input.Resource)
// that references the user. Without the body the Practitioner compartment cannot tell.
func (e *Engine) everythingInReach(a *access, in Input) (bool, error) {
	switch a.user.kind {
	case ReachPatients:
		return a.user.set[in.ID], nil
	case ReachPractitioners:
		if len(in.Resource) == 0 {
			return false, nil
		}
		var h struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		if err := json.Unmarshal(in.Resource, &h); err != nil || h.ResourceType != "Patient" || h.ID != in.ID {
			return false, nil
		}
		return e.inReach(a.user, "Patient", in.Resource)
	}
	return false, nil
}
