package fhirapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/gateway"
	"github.com/fhirgate/fhirgate/internal/policy"
)

// heldResponse keeps a response in memory until the request's audit event is recorded.
type heldResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func newHeldResponse() *heldResponse { return &heldResponse{header: http.Header{}} }

func (h *heldResponse) Header() http.Header { return h.header }

func (h *heldResponse) WriteHeader(code int) {
	if h.code == 0 {
		h.code = code
	}
}

func (h *heldResponse) Write(p []byte) (int, error) {
	if h.code == 0 {
		h.code = http.StatusOK
	}
	return h.body.Write(p)
}

func (h *heldResponse) status() int {
	if h.code == 0 {
		return http.StatusOK
	}
	return h.code
}

func (h *heldResponse) flush(w http.ResponseWriter) {
	for k, v := range h.header {
		w.Header()[k] = v
	}
	w.WriteHeader(h.status())
	_, _ = w.Write(h.body.Bytes())
}

// noteDecision keeps what the audit event needs from a decision: the interaction, the type, the
// reasons, and the patient of a compartment search.
func (st *requestState) noteDecision(in policy.Input, d policy.Decision) {
	if st.resourceType == "" {
		st.resourceType = in.Type
	}
	if in.Operation != "" {
		st.operation = strings.TrimPrefix(in.Operation, "$")
		st.action = audit.ActionOperation
	}
	for _, r := range d.Reasons {
		if !slices.Contains(st.reasons, string(r)) {
			st.reasons = append(st.reasons, string(r))
		}
	}
	if in.Query != nil && in.Query.Compartment != nil && in.Query.Compartment.Type == "Patient" {
		st.addPatient(in.Query.Compartment.ID)
	}
	if in.Operation != "" && in.Type == "Patient" && in.ID != "" {
		st.addPatient(in.ID)
	}
}

func (st *requestState) addPatient(id string) {
	if id == "" {
		return
	}
	if st.patients == nil {
		st.patients = map[string]bool{}
	}
	st.patients[id] = true
}

// touched records resources the request returned or wrote, and the patients they concern.
func touched(r *http.Request, resources ...*fhir.Resource) {
	st := stateOf(r)
	for _, res := range resources {
		st.resources = append(st.resources, res.Type+"/"+res.ID)
		for _, p := range patientsOf(res) {
			st.addPatient(p)
		}
	}
}

// returned sets the count of resources a search or read returned.
func returned(r *http.Request, n int) { stateOf(r).count = n }

// patientsOf finds the patients a resource concerns without full index extraction: a Patient
// itself, and the Patient references of the elements that place most resources in a patient's
// compartment.
func patientsOf(res *fhir.Resource) []string {
	if res.Type == "Patient" {
		return []string{res.ID}
	}
	if len(res.Body) == 0 {
		return nil
	}
	var refs struct {
		Subject     *struct{ Reference string } `json:"subject"`
		Patient     *struct{ Reference string } `json:"patient"`
		Beneficiary *struct{ Reference string } `json:"beneficiary"`
	}
	if json.Unmarshal(res.Body, &refs) != nil {
		return nil
	}
	var out []string
	for _, ref := range []*struct{ Reference string }{refs.Subject, refs.Patient, refs.Beneficiary} {
		if ref != nil {
			if id, ok := strings.CutPrefix(ref.Reference, "Patient/"); ok && fhir.ValidID(id) {
				out = append(out, id)
			}
		}
	}
	return out
}

// record writes the request's audit event.
func (a *API) record(r *http.Request, st *requestState, status int) error {
	e := audit.Event{
		Time:         st.start,
		Action:       st.action,
		Status:       status,
		Reasons:      st.reasons,
		ResourceType: st.resourceType,
		Resources:    st.resources,
		Operation:    st.operation,
		Query:        r.URL.RawQuery,
		Count:        st.count,
		SourceIP:     clientIP(r),
		UserAgent:    r.UserAgent(),
		RequestID:    gateway.RequestID(r.Context()),
	}
	if e.ResourceType == "" {
		e.ResourceType = r.PathValue("type")
	}
	if p := st.principal; p != nil {
		e.ClientID, e.Subject, e.FHIRUser, e.Roles, e.TokenID = p.ClientID, p.Subject, p.FHIRUser, p.Roles, p.JTI
		e.PurposeOfUse, e.BreakGlass = p.PurposeOfUse, p.IsBreakGlass()
		st.addPatient(p.Patient)
	}
	for id := range st.patients {
		e.Patients = append(e.Patients, id)
	}
	slices.Sort(e.Patients)
	return a.opts.Audit.Record(context.WithoutCancel(r.Context()), e)
}

// clientIP is the client address as the gateway resolved it (trusted proxies applied there), or
// the peer address outside the gateway.
func clientIP(r *http.Request) string {
	if ip := gateway.ClientIP(r.Context()); ip.IsValid() {
		return ip.String()
	}
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i > 0 && !strings.HasSuffix(host, "]") {
		host = host[:i]
	}
	return strings.Trim(host, "[]")
}
