package gateway

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/fhir"
)

// problem is a refusal by the gateway, rendered in the format of the route group.
type problem struct {
	status    int
	fhirCode  string // OperationOutcome issue type
	oauthCode string // RFC 6749 error code
	msg       string
}

// writeProblem answers with p in the format of the group: an OperationOutcome on FHIR routes
// (the fhir group and /fhir/metadata), RFC 6749 error JSON on OAuth, admin and other discovery
// routes, plain text on login pages. Every refusal is no-store and nosniff.
func writeProblem(w http.ResponseWriter, r *http.Request, gr *group, p problem) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	switch {
	case gr.name == config.GroupFHIR || gr.name == config.GroupDiscovery && (r.URL.Path == "/fhir" || strings.HasPrefix(r.URL.Path, "/fhir/")):
		h.Set("Content-Type", "application/fhir+json; charset=utf-8")
		w.WriteHeader(p.status)
		_, _ = w.Write(fhir.MarshalOutcome((&fhir.Error{Code: p.fhirCode, Diagnostics: p.msg}).Outcome()))
	case gr.name == config.GroupLogin:
		h.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(p.status)
		_, _ = w.Write([]byte(p.msg + "\n"))
	default:
		h.Set("Content-Type", "application/json")
		h.Set("Pragma", "no-cache")
		w.WriteHeader(p.status)
		b, _ := json.Marshal(struct {
			Error       string `json:"error"`
			Description string `json:"error_description,omitempty"`
		}{p.oauthCode, p.msg})
		_, _ = w.Write(b)
	}
}
