package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/smart"
)

// The user access strategies (config policy.user_access).
const (
	UserAccessAll         = "all"
	UserAccessCompartment = "compartment"
	UserAccessCareTeam    = "care-team"
)

// DefaultMaxUserPatients bounds the patients a user/ token may reach through a patient-set
// strategy (care-team): above it the request is refused (user-access-too-broad), because the set
// becomes an OR clause of that many values in every search.
const DefaultMaxUserPatients = 1000

// ReachKind says how a user's reach is expressed.
type ReachKind int

// The kinds of reach.
const (
	// ReachAll: user/ scopes reach every patient (single-tenant default).
	ReachAll ReachKind = iota
	// ReachPatients: user/ scopes reach the Patient compartments of Reach.Patients only.
	ReachPatients
	// ReachPractitioners: user/ scopes reach the Practitioner compartments of
	// Reach.Practitioners only (resources that reference the user).
	ReachPractitioners
)

// Reach is what a Practitioner or PractitionerRole user's own permissions let their user/ scopes
// see (scopes delegate the user's permissions and never widen them).
type Reach struct {
	Kind ReachKind
	// Patients are patient ids (ReachPatients); empty means none.
	Patients []string
	// Practitioners are relative references, Practitioner/id or PractitionerRole/id
	// (ReachPractitioners).
	Practitioners []string
}

// UserAccess computes the reach of a user. Implementations must be safe for concurrent use; a
// relationship-based one (OpenFGA ListObjects) returns ReachPatients. An error refuses the
// request (evaluation-error, fail closed).
type UserAccess interface {
	// Name is the strategy name recorded in Decision.Rule (user_access=<name>).
	Name() string
	// Reach returns the reach of fhirUser (Practitioner/id or PractitionerRole/id). A
	// ReachPatients answer may stop after limit+1 ids: more than limit refuses the request.
	Reach(ctx context.Context, fhirUser string, limit int) (Reach, error)
}

// AllPatients is the "all" strategy: user/ scopes reach every patient (today's behaviour).
type AllPatients struct{}

// Name implements UserAccess.
func (AllPatients) Name() string { return UserAccessAll }

// Reach implements UserAccess.
func (AllPatients) Reach(context.Context, string, int) (Reach, error) {
	return Reach{Kind: ReachAll}, nil
}

// PractitionerCompartment is the "compartment" strategy: user/ scopes reach the resources that
// reference the user through the R4 Practitioner CompartmentDefinition parameters
// (practitionerCompartment), plus the shared types; every other type is refused.
type PractitionerCompartment struct{}

// Name implements UserAccess.
func (PractitionerCompartment) Name() string { return UserAccessCompartment }

// Reach implements UserAccess.
func (PractitionerCompartment) Reach(_ context.Context, fhirUser string, _ int) (Reach, error) {
	return Reach{Kind: ReachPractitioners, Practitioners: []string{fhirUser}}, nil
}

// CareTeamSource answers which patients a practitioner cares for. The app implements it over
// the backend; the engine stays pure.
type CareTeamSource interface {
	// CareTeamPatients returns the ids of the patients whose CareTeam.participant,
	// Patient.generalPractitioner or Encounter.participant references practitionerRef
	// (Practitioner/id or PractitionerRole/id) or, for a Practitioner, one of the
	// PractitionerRoles whose practitioner it is. It may stop after limit+1 ids.
	CareTeamPatients(ctx context.Context, practitionerRef string, limit int) ([]string, error)
}

// CareTeam is the "care-team" strategy: user/ scopes reach the Patient compartments of the
// patients Source returns, plus the shared types; every other type is refused.
type CareTeam struct {
	Source CareTeamSource
}

// Name implements UserAccess.
func (CareTeam) Name() string { return UserAccessCareTeam }

// Reach implements UserAccess.
func (c CareTeam) Reach(ctx context.Context, fhirUser string, limit int) (Reach, error) {
	if c.Source == nil {
		return Reach{}, errors.New("policy: care-team strategy without a source")
	}
	ids, err := c.Source.CareTeamPatients(ctx, fhirUser, limit)
	if err != nil {
		return Reach{}, fmt.Errorf("policy: care team of %s: %w", fhirUser, err)
	}
	return Reach{Kind: ReachPatients, Patients: ids}, nil
}

// NewUserAccess builds the strategy named in the configuration; care-team needs source.
func NewUserAccess(name string, source CareTeamSource) (UserAccess, error) {
	switch name {
	case "", UserAccessAll:
		return AllPatients{}, nil
	case UserAccessCompartment:
		return PractitionerCompartment{}, nil
	case UserAccessCareTeam:
		if source == nil {
			return nil, errors.New("policy: user_access care-team needs a care-team source")
		}
		return CareTeam{Source: source}, nil
	}
	return nil, fmt.Errorf("policy: unknown user_access %q (all, compartment or care-team)", name)
}

// errTooBroad marks a reach above the cap.
var errTooBroad = errors.New("policy: the user reaches too many patients")

// reach is a checked Reach of one subject.
type reach struct {
	strategy string
	kind     ReachKind
	patients []string // sorted, unique
	set      map[string]bool
	refs     []string // Practitioner/id, PractitionerRole/id
}

func (e *Engine) userReach(ctx context.Context, fhirUser string) (*reach, error) {
	r, err := e.userAccess.Reach(ctx, fhirUser, e.maxPatients)
	if err != nil {
		return nil, err
	}
	out := &reach{strategy: e.userAccess.Name(), kind: r.Kind}
	switch r.Kind {
	case ReachAll:
		return nil, nil
	case ReachPatients:
		if len(r.Patients) > e.maxPatients {
			return nil, fmt.Errorf("%w: more than %d patients", errTooBroad, e.maxPatients)
		}
		out.set = make(map[string]bool, len(r.Patients))
		for _, id := range r.Patients {
			if !smart.ValidID(id) {
				return nil, fmt.Errorf("policy: %s returned the invalid patient id %q", out.strategy, id)
			}
			out.set[id] = true
		}
		out.patients = make([]string, 0, len(out.set))
		for id := range out.set {
			out.patients = append(out.patients, id)
		}
		slices.Sort(out.patients)
	case ReachPractitioners:
		if len(r.Practitioners) == 0 {
			return nil, fmt.Errorf("policy: %s returned no practitioner", out.strategy)
		}
		for _, ref := range r.Practitioners {
			typ, _, ok := smart.SplitReference(ref)
			if !ok || (typ != "Practitioner" && typ != "PractitionerRole") {
				return nil, fmt.Errorf("policy: %s returned %q, not a Practitioner or PractitionerRole reference", out.strategy, ref)
			}
		}
		out.refs = slices.Clone(r.Practitioners)
	default:
		return nil, fmt.Errorf("policy: %s returned an unknown reach", out.strategy)
	}
	return out, nil
}

// practitionerCompartment is the R4 Practitioner CompartmentDefinition: for each resource type,
// the reference search parameters that place it in a practitioner's compartment. Source:
// http://hl7.org/fhir/R4/compartmentdefinition-practitioner.html (FHIR 4.0.1). Practitioner
// ({def}), PractitionerRole and Person are left out: Practitioner and PractitionerRole are
// shared types (reachable without a bound), Person is not modelled. The first parameter of a
// type is the one a search is narrowed by; a read accepts any of them. New checks every entry
// against the search registry.
var practitionerCompartment = map[string][]string{
	"Account":                     {"subject"},
	"AdverseEvent":                {"recorder"},
	"AllergyIntolerance":          {"recorder", "asserter"},
	"Appointment":                 {"actor"},
	"AppointmentResponse":         {"actor"},
	"AuditEvent":                  {"agent"},
	"Basic":                       {"author"},
	"CarePlan":                    {"performer"},
	"CareTeam":                    {"participant"},
	"ChargeItem":                  {"enterer", "performer-actor"},
	"Claim":                       {"provider", "enterer", "payee", "care-team"},
	"ClaimResponse":               {"requestor"},
	"ClinicalImpression":          {"assessor"},
	"Communication":               {"sender", "recipient"},
	"CommunicationRequest":        {"sender", "recipient", "requester"},
	"Composition":                 {"author", "subject", "attester"},
	"Condition":                   {"asserter"},
	"CoverageEligibilityRequest":  {"enterer", "provider"},
	"CoverageEligibilityResponse": {"requestor"},
	"DetectedIssue":               {"author"},
	"DeviceRequest":               {"requester", "performer"},
	"DiagnosticReport":            {"performer"},
	"DocumentManifest":            {"author", "subject", "recipient"},
	"DocumentReference":           {"author", "subject", "authenticator"},
	"Encounter":                   {"participant", "practitioner"},
	"EpisodeOfCare":               {"care-manager"},
	"ExplanationOfBenefit":        {"provider", "enterer", "payee", "care-team"},
	"Flag":                        {"author"},
	"Group":                       {"member"},
	"Immunization":                {"performer"},
	"Invoice":                     {"participant"},
	"Linkage":                     {"author"},
	"List":                        {"source"},
	"Media":                       {"operator", "subject"},
	"MedicationAdministration":    {"performer"},
	"MedicationDispense":          {"performer", "receiver"},
	"MedicationRequest":           {"requester"},
	"MedicationStatement":         {"source"},
	"MessageHeader":               {"author", "receiver", "responsible", "enterer"},
	"NutritionOrder":              {"provider"},
	"Observation":                 {"performer"},
	"Patient":                     {"general-practitioner"},
	"PaymentNotice":               {"provider"},
	"PaymentReconciliation":       {"requestor"},
	"Procedure":                   {"performer"},
	"Provenance":                  {"agent"},
	"QuestionnaireResponse":       {"author", "source"},
	"RequestGroup":                {"author", "participant"},
	"ResearchStudy":               {"principalinvestigator"},
	"RiskAssessment":              {"performer"},
	"Schedule":                    {"actor"},
	"ServiceRequest":              {"requester", "performer"},
	"Specimen":                    {"collector"},
	"SupplyDelivery":              {"supplier", "receiver"},
	"SupplyRequest":               {"requester"},
	"VisionPrescription":          {"prescriber"},
}

// practitionerParams resolves practitionerCompartment with the registry: for each reference
// type (Practitioner, PractitionerRole), the parameters of each resource type that can point at
// it, in table order.
func practitionerParams(reg *search.Registry) (map[string]map[string][]*search.Param, error) {
	out := map[string]map[string][]*search.Param{"Practitioner": {}, "PractitionerRole": {}}
	for typ, codes := range practitionerCompartment {
		if !smart.IsResourceType(typ) {
			return nil, fmt.Errorf("policy: practitioner compartment names %q, not a resource type", typ)
		}
		for _, code := range codes {
			p, ok := reg.Lookup(typ, code)
			if !ok || p.Type != search.TypeReference {
				return nil, fmt.Errorf("policy: practitioner compartment names %s.%s, not a reference search parameter", typ, code)
			}
			for refType, m := range out {
				if len(p.Targets) == 0 || slices.Contains(p.Targets, refType) {
					m[typ] = append(m[typ], p)
				}
			}
		}
	}
	return out, nil
}

// patientSetParam is the parameter a search of typ is narrowed by to a set of patients: _id for
// Patient, otherwise patient, subject or the first Patient compartment parameter that can point
// at a Patient. It is a subset of compartment membership (a search may leave out a resource
// that is in a patient's compartment through a secondary reference; it never adds one).
func (e *Engine) patientSetParam(typ string) (*search.Param, bool) {
	if typ == "Patient" {
		return e.reg.Lookup("Patient", "_id")
	}
	params := e.compartmentParams[typ]
	var cands []string
	for _, pref := range []string{"patient", "subject"} {
		if slices.Contains(params, pref) {
			cands = append(cands, pref)
		}
	}
	cands = append(cands, params...)
	for _, code := range cands {
		p, ok := e.reg.Lookup(typ, code)
		if ok && p.Type == search.TypeReference && (len(p.Targets) == 0 || slices.Contains(p.Targets, "Patient")) {
			return p, true
		}
	}
	return nil, false
}

// noMatchID is an _id value no resource can have (ids are [A-Za-z0-9.-]{1,64}): the clause
// that narrows a search to an empty patient set.
const noMatchID = "~none~"

// userClause is the clause that bounds a search of typ to the subject's reach.
func (e *Engine) userClause(r *reach, typ string) (search.Clause, error) {
	opts := search.ParseOptions{BaseURL: e.baseURL, Now: e.now}
	switch r.kind {
	case ReachPatients:
		if len(r.patients) == 0 {
			return search.ParseClause(e.reg, []string{typ}, "_id", noMatchID, opts)
		}
		p, ok := e.patientSetParam(typ)
		if !ok {
			return search.Clause{}, fmt.Errorf("no parameter of %s points at a patient", typ)
		}
		vals := r.patients
		if typ != "Patient" {
			vals = make([]string, len(r.patients))
			for i, id := range r.patients {
				vals[i] = "Patient/" + id
			}
		}
		return search.ParseClause(e.reg, []string{typ}, p.Code, joinValues(vals), opts)
	case ReachPractitioners:
		var vals []string
		var code string
		for _, ref := range r.refs {
			refType, _, _ := smart.SplitReference(ref)
			ps := e.practParams[refType][typ]
			if len(ps) == 0 {
				continue
			}
			if code == "" {
				code = ps[0].Code
			}
			if ps[0].Code == code {
				vals = append(vals, ref)
			}
		}
		if code == "" {
			return search.Clause{}, fmt.Errorf("%s is not in the practitioner compartment", typ)
		}
		return search.ParseClause(e.reg, []string{typ}, code, joinValues(vals), opts)
	}
	return search.Clause{}, errors.New("no user bound")
}

func joinValues(vs []string) string { return strings.Join(vs, ",") }

// reaches reports whether a user bound lets typ be reached at all, and why not.
func (e *Engine) reaches(r *reach, typ string) (bool, Reason, string) {
	switch r.kind {
	case ReachPatients:
		if !e.compartment[typ] {
			return false, ReasonTypeOutsideUserAccess, fmt.Sprintf("user_access=%s does not reach %s (outside the Patient compartment and the shared types)", r.strategy, typ)
		}
		if _, ok := e.patientSetParam(typ); !ok && typ != "Patient" {
			return false, ReasonTypeOutsideUserAccess, fmt.Sprintf("user_access=%s cannot bound %s", r.strategy, typ)
		}
	case ReachPractitioners:
		for _, ref := range r.refs {
			refType, _, _ := smart.SplitReference(ref)
			if len(e.practParams[refType][typ]) > 0 {
				return true, "", ""
			}
		}
		return false, ReasonTypeOutsideUserAccess, fmt.Sprintf("user_access=%s: %s is not in the Practitioner compartment", r.strategy, typ)
	}
	return true, "", ""
}

// inReach checks a body against a user bound.
func (e *Engine) inReach(r *reach, typ string, body []byte) (bool, error) {
	switch r.kind {
	case ReachPatients:
		if len(r.patients) == 0 {
			return false, nil
		}
		if l, ok := e.membership.(CompartmentLister); ok {
			ids, err := l.Compartments("Patient", typ, body)
			if err != nil {
				return false, err
			}
			for _, id := range ids {
				if r.set[id] {
					return true, nil
				}
			}
			return false, nil
		}
		for _, id := range r.patients {
			in, err := e.membership.InCompartment(search.CompartmentRef{Type: "Patient", ID: id}, typ, body)
			if err != nil || in {
				return in, err
			}
		}
		return false, nil
	case ReachPractitioners:
		opts := search.ParseOptions{BaseURL: e.baseURL, Now: e.now}
		for _, ref := range r.refs {
			refType, _, _ := smart.SplitReference(ref)
			for _, p := range e.practParams[refType][typ] {
				cl, err := search.ParseClause(e.reg, []string{typ}, p.Code, ref, opts)
				if err != nil {
					return false, err
				}
				ok, err := e.matcher.Matches(typ, body, []search.Clause{cl})
				if err != nil || ok {
					return ok, err
				}
			}
		}
		return false, nil
	}
	return false, errors.New("policy: no user bound")
}

// CompartmentLister is an optional fast path of Membership: the ids of every compartment of
// compartmentType that holds the body. With it a patient-set check extracts the body once;
// without it the engine asks InCompartment for each patient of the set.
type CompartmentLister interface {
	Compartments(compartmentType, resourceType string, body []byte) ([]string, error)
}
