package audit

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Code systems used in the AuditEvents.
const (
	systemDCM            = "http://dicom.nema.org/resources/ontology/DCM"
	systemAuditType      = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	systemInteraction    = "http://hl7.org/fhir/restful-interaction"
	systemIHEEvent       = "urn:ihe:event-type-code"
	systemEntityType     = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	systemObjectRole     = "http://terminology.hl7.org/CodeSystem/object-role"
	systemParticipation  = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
	systemActReason      = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	systemSourceType     = "http://terminology.hl7.org/CodeSystem/security-source-type"
	systemBALPEntityType = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
	balpProfileBase      = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/"

	// SystemAction is fhirgate's code system of Action values; every AuditEvent carries its
	// action as a subtype in this system so that it can be filtered exactly.
	SystemAction = "https://fhirgate.dev/fhir/CodeSystem/audit-action"
	// SystemReason holds the decision reason codes.
	SystemReason = "https://fhirgate.dev/fhir/CodeSystem/audit-reason"
	// SystemRole holds user and client roles.
	SystemRole = "https://fhirgate.dev/fhir/CodeSystem/role"
	// SystemOperation holds FHIR operation names.
	SystemOperation = "https://fhirgate.dev/fhir/CodeSystem/operation"
	// ExtensionOutcome is the extension that carries the outcome details R4 has no element for:
	// outcome code, HTTP status, reason codes, resource count, break-glass and token id.
	ExtensionOutcome = "https://fhirgate.dev/fhir/StructureDefinition/audit-outcome"
	// MaxEntities bounds the data entities listed in one AuditEvent; the count extension still
	// says how many resources the request returned.
	MaxEntities = 10000
)

// Source describes the server observing the events (AuditEvent.source).
type Source struct {
	// Observer names the server, usually its base URL.
	Observer string
	// Site is the deployment or tenant name; the Event's Tenant overrides it.
	Site string
}

type coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

type concept struct {
	Coding []coding `json:"coding,omitempty"`
	Text   string   `json:"text,omitempty"`
}

type identifier struct {
	Type   *concept `json:"type,omitempty"`
	System string   `json:"system,omitempty"`
	Value  string   `json:"value"`
}

type reference struct {
	Reference  string      `json:"reference,omitempty"`
	Identifier *identifier `json:"identifier,omitempty"`
	Display    string      `json:"display,omitempty"`
}

type network struct {
	Address string `json:"address"`
	Type    string `json:"type"`
}

type agent struct {
	Type         *concept  `json:"type,omitempty"`
	Role         []concept `json:"role,omitempty"`
	Who          reference `json:"who"`
	Requestor    bool      `json:"requestor"`
	Network      *network  `json:"network,omitempty"`
	PurposeOfUse []concept `json:"purposeOfUse,omitempty"`
}

type entityDetail struct {
	Type        string `json:"type"`
	ValueString string `json:"valueString"`
}

type entity struct {
	What   reference      `json:"what"`
	Type   *coding        `json:"type,omitempty"`
	Role   *coding        `json:"role,omitempty"`
	Query  string         `json:"query,omitempty"`
	Detail []entityDetail `json:"detail,omitempty"`
}

type source struct {
	Site     string    `json:"site,omitempty"`
	Observer reference `json:"observer"`
	Type     []coding  `json:"type"`
}

type extension struct {
	URL          string      `json:"url"`
	ValueCode    string      `json:"valueCode,omitempty"`
	ValueString  string      `json:"valueString,omitempty"`
	ValueInteger *int        `json:"valueInteger,omitempty"`
	ValueBoolean *bool       `json:"valueBoolean,omitempty"`
	Extension    []extension `json:"extension,omitempty"`
}

type meta struct {
	Profile []string `json:"profile,omitempty"`
}

type auditEvent struct {
	ResourceType   string      `json:"resourceType"`
	ID             string      `json:"id"`
	Meta           *meta       `json:"meta,omitempty"`
	Extension      []extension `json:"extension,omitempty"`
	Type           coding      `json:"type"`
	Subtype        []coding    `json:"subtype,omitempty"`
	Action         string      `json:"action,omitempty"`
	Recorded       string      `json:"recorded"`
	Outcome        string      `json:"outcome"`
	OutcomeDesc    string      `json:"outcomeDesc,omitempty"`
	PurposeOfEvent []concept   `json:"purposeOfEvent,omitempty"`
	Agent          []agent     `json:"agent"`
	Source         source      `json:"source"`
	Entity         []entity    `json:"entity,omitempty"`
}

func dcm(code, display string) coding { return coding{System: systemDCM, Code: code, Display: display} }
func iheEvent(code, display string) coding {
	return coding{System: systemIHEEvent, Code: code, Display: display}
}

// credentialParams are query parameters that may carry a credential; they never reach the trail.
// ("code" is not among them: on the FHIR API it is a search parameter, and the authorization
// server does not record its query strings.)
var credentialParams = map[string]bool{
	"access_token": true, "refresh_token": true, "id_token": true, "id_token_hint": true, "token": true,
	"code_verifier": true, "client_secret": true, "client_assertion": true,
	"assertion": true, "password": true, "subject_token": true, "actor_token": true,
}

// ScrubQuery returns the query string without parameters that can carry credentials, with the
// parameters in a stable order. An unparsable query is replaced by a marker, never kept raw.
func ScrubQuery(q string) string {
	q = strings.TrimPrefix(q, "?")
	if q == "" {
		return ""
	}
	vals, err := url.ParseQuery(q)
	if err != nil {
		return "_unparsable=" + fmt.Sprint(len(q))
	}
	for k := range vals {
		if credentialParams[strings.ToLower(k)] {
			delete(vals, k)
		}
	}
	return vals.Encode()
}

// Outcome codes of AuditEvent.outcome (R4 audit-event-outcome).
func outcomeCode(o Outcome) string {
	switch o {
	case OutcomeSuccess:
		return "0"
	case OutcomeDenied, OutcomeFailure:
		return "4"
	default:
		return "8"
	}
}

// normalize fills the derived fields of e and checks it.
func normalize(e *Event, now time.Time) error {
	if !e.Action.Valid() {
		return fmt.Errorf("audit: unknown action %q", e.Action)
	}
	if e.Time.IsZero() {
		e.Time = now
	}
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	if e.Outcome == "" {
		e.Outcome = OutcomeFromStatus(e.Status)
	}
	if !e.Outcome.Valid() {
		return fmt.Errorf("audit: unknown outcome %q", e.Outcome)
	}
	e.Query = ScrubQuery(e.Query)
	e.Patients = normalizePatients(e.Patients)
	if e.BreakGlass && !slices.Contains(e.PurposeOfUse, "ETREAT") {
		e.PurposeOfUse = append(slices.Clone(e.PurposeOfUse), "ETREAT")
	}
	return nil
}

// normalizePatients turns "Patient/x" into "x", drops empties and duplicates, and sorts.
func normalizePatients(ps []string) []string {
	if len(ps) == 0 {
		return nil
	}
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		p = strings.TrimPrefix(p, "Patient/")
		if p != "" {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// BuildAuditEvent maps an event to its FHIR R4 AuditEvent JSON (BALP). e must have been through
// normalize (Record does this); id is the AuditEvent id.
func BuildAuditEvent(e Event, id string, src Source) ([]byte, error) {
	ae := auditEvent{
		ResourceType: "AuditEvent",
		ID:           id,
		Recorded:     e.Time.UTC().Format("2006-01-02T15:04:05.000000Z07:00"),
		Outcome:      outcomeCode(e.Outcome),
		OutcomeDesc:  outcomeDesc(e),
	}
	actionCoding := coding{System: SystemAction, Code: string(e.Action)}
	if info, ok := restActions[e.Action]; ok {
		ae.Type = coding{System: systemAuditType, Code: "rest", Display: "RESTful Operation"}
		ae.Subtype = []coding{{System: systemInteraction, Code: string(e.Action), Display: info.display}, actionCoding}
		if e.Action == ActionOperation && e.Operation != "" {
			ae.Subtype = append(ae.Subtype, coding{System: SystemOperation, Code: strings.TrimPrefix(e.Operation, "$")})
		}
		ae.Action = info.action
		if p := balpProfile(e); p != "" {
			ae.Meta = &meta{Profile: []string{balpProfileBase + p}}
		}
	} else {
		info := securityInfo{typ: dcm("110113", "Security Alert"), subtype: dcm("110132", "Use of Restricted Function"), action: "E"}
		if si, ok := securityActions[e.Action]; ok {
			info = si
		}
		ae.Type = info.typ
		ae.Subtype = []coding{info.subtype, actionCoding}
		ae.Action = info.action
	}
	for _, p := range e.PurposeOfUse {
		ae.PurposeOfEvent = append(ae.PurposeOfEvent, concept{Coding: []coding{{System: systemActReason, Code: p}}})
	}
	ae.Extension = []extension{outcomeExtension(e)}
	ae.Agent = agents(e, src)
	ae.Source = source{
		Site:     firstNonEmpty(e.Tenant, src.Site),
		Observer: reference{Display: firstNonEmpty(src.Observer, "fhirgate")},
		Type:     []coding{{System: systemSourceType, Code: "4", Display: "Application Server"}},
	}
	ae.Entity = entities(e)
	return json.Marshal(ae)
}

func balpProfile(e Event) string {
	var p string
	switch e.Action {
	case ActionRead, ActionVRead:
		p = "Read"
	case ActionSearchType, ActionSearchSystem:
		p = "Query"
	case ActionCreate:
		p = "Create"
	case ActionUpdate, ActionPatch:
		p = "Update"
	case ActionDelete:
		p = "Delete"
	default:
		return ""
	}
	if len(e.Patients) > 0 {
		return "IHE.BasicAudit.Patient" + p
	}
	return "IHE.BasicAudit." + p
}

func outcomeDesc(e Event) string {
	var b strings.Builder
	b.WriteString(string(e.Outcome))
	if len(e.Reasons) > 0 {
		b.WriteString(": ")
		b.WriteString(strings.Join(e.Reasons, ", "))
	}
	if e.Detail != "" {
		b.WriteString(" (")
		b.WriteString(e.Detail)
		b.WriteString(")")
	}
	return b.String()
}

func outcomeExtension(e Event) extension {
	ext := extension{URL: ExtensionOutcome}
	ext.Extension = append(ext.Extension, extension{URL: "outcome", ValueCode: string(e.Outcome)})
	if e.Status != 0 {
		ext.Extension = append(ext.Extension, extension{URL: "status", ValueInteger: ptr(e.Status)})
	}
	for _, r := range e.Reasons {
		ext.Extension = append(ext.Extension, extension{URL: "reason", ValueCode: r})
	}
	if e.Count >= 0 && e.Action.IsREST() {
		ext.Extension = append(ext.Extension, extension{URL: "count", ValueInteger: ptr(e.Count)})
	}
	if e.BreakGlass {
		ext.Extension = append(ext.Extension, extension{URL: "breakGlass", ValueBoolean: ptr(true)})
	}
	if e.TokenID != "" {
		ext.Extension = append(ext.Extension, extension{URL: "tokenId", ValueString: e.TokenID})
	}
	return ext
}

func agents(e Event, src Source) []agent {
	var out []agent
	var pou []concept
	for _, p := range e.PurposeOfUse {
		pou = append(pou, concept{Coding: []coding{{System: systemActReason, Code: p}}})
	}
	if e.Subject != "" || e.FHIRUser != "" {
		a := agent{
			Type:         &concept{Coding: []coding{{System: systemParticipation, Code: "IRCP", Display: "information recipient"}}},
			Requestor:    true,
			PurposeOfUse: pou,
		}
		a.Who.Reference = e.FHIRUser
		if e.Subject != "" {
			a.Who.Identifier = &identifier{Value: e.Subject}
		}
		for _, r := range e.Roles {
			a.Role = append(a.Role, concept{Coding: []coding{{System: SystemRole, Code: r}}})
		}
		out = append(out, a)
	}
	client := agent{
		Type:      &concept{Coding: []coding{dcm("110153", "Source Role ID")}},
		Requestor: e.Subject == "" && e.FHIRUser == "",
	}
	if e.ClientID != "" {
		client.Who.Identifier = &identifier{Value: e.ClientID}
	} else {
		client.Who.Display = "unidentified client"
	}
	if client.Requestor {
		client.PurposeOfUse = pou
		if e.Subject == "" {
			for _, r := range e.Roles {
				client.Role = append(client.Role, concept{Coding: []coding{{System: SystemRole, Code: r}}})
			}
		}
	}
	if e.SourceIP != "" {
		client.Network = &network{Address: e.SourceIP, Type: "2"}
	}
	out = append(out, client)
	out = append(out, agent{
		Type: &concept{Coding: []coding{dcm("110152", "Destination Role ID")}},
		Who:  reference{Display: firstNonEmpty(src.Observer, "fhirgate")},
	})
	return out
}

func entities(e Event) []entity {
	var out []entity
	if e.RequestID != "" || e.UserAgent != "" {
		t := entity{Type: &coding{System: systemBALPEntityType, Code: "XrequestId"}}
		if e.RequestID != "" {
			t.What.Identifier = &identifier{Value: e.RequestID}
		} else {
			t.What.Display = "no request id"
		}
		if e.UserAgent != "" {
			t.Detail = append(t.Detail, entityDetail{Type: "User-Agent", ValueString: e.UserAgent})
		}
		out = append(out, t)
	}
	for _, p := range e.Patients {
		out = append(out, entity{
			What: reference{Reference: "Patient/" + p},
			Type: &coding{System: systemEntityType, Code: "1", Display: "Person"},
			Role: &coding{System: systemObjectRole, Code: "1", Display: "Patient"},
		})
	}
	if e.Query != "" || e.Action == ActionSearchType || e.Action == ActionSearchSystem {
		q := entity{
			Type: &coding{System: systemEntityType, Code: "2", Display: "System Object"},
			Role: &coding{System: systemObjectRole, Code: "24", Display: "Query"},
		}
		q.What.Display = e.ResourceType
		if q.What.Display == "" {
			q.What.Display = "system"
		}
		if e.Query != "" {
			q.Query = base64.StdEncoding.EncodeToString([]byte(e.Query))
		}
		out = append(out, q)
	}
	n := 0
	for _, r := range e.Resources {
		if n >= MaxEntities {
			break
		}
		if r == "" {
			continue
		}
		out = append(out, entity{
			What: reference{Reference: r},
			Type: &coding{System: systemEntityType, Code: "2", Display: "System Object"},
			Role: &coding{System: systemObjectRole, Code: "4", Display: "Domain Resource"},
		})
		n++
	}
	return out
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func ptr[T any](v T) *T { return &v }
