package fhirapi

import (
	"encoding/json"
	"net/http"

	"github.com/fhirgate/fhirgate/internal/fhir"
)

// postBundle is POST to the base: a batch or transaction Bundle.
func (a *API) postBundle(w http.ResponseWriter, r *http.Request) error {
	if a.opts.Bundles == nil {
		return fhir.Errorf(http.StatusNotImplemented, "not-supported", "batch and transaction Bundles are not enabled")
	}
	body, err := a.readBody(w, r)
	if err != nil {
		return err
	}
	h, err := fhir.DecodeHeader(body)
	if err != nil {
		return err
	}
	if h.ResourceType != "Bundle" {
		return fhir.Invalid("resourceType", "POST to the base takes a Bundle, got %s", h.ResourceType)
	}
	resp, err := a.opts.Bundles.Process(r.Context(), body)
	if err != nil {
		return err
	}
	out, err := json.Marshal(resp)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
