package fhirapi

import (
	"encoding/json"
	"net/http"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

func (a *API) metadata(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, a.capability)
	return nil
}

type capabilityStatement struct {
	ResourceType   string           `json:"resourceType"`
	Status         string           `json:"status"`
	Date           string           `json:"date"`
	Publisher      string           `json:"publisher"`
	Kind           string           `json:"kind"`
	Software       capSoftware      `json:"software"`
	Implementation capImplementaton `json:"implementation"`
	FHIRVersion    string           `json:"fhirVersion"`
	Format         []string         `json:"format"`
	Rest           []capRest        `json:"rest"`
}

type capSoftware struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

type capImplementaton struct {
	Description string `json:"description"`
	URL         string `json:"url"`
}

type capRest struct {
	Mode        string           `json:"mode"`
	Security    json.RawMessage  `json:"security,omitempty"`
	Resource    []capResource    `json:"resource"`
	Interaction []capInteraction `json:"interaction"`
}

type capInteraction struct {
	Code string `json:"code"`
}

type capResource struct {
	Type              string           `json:"type"`
	Interaction       []capInteraction `json:"interaction"`
	Versioning        string           `json:"versioning"`
	ReadHistory       bool             `json:"readHistory"`
	UpdateCreate      bool             `json:"updateCreate"`
	ConditionalCreate bool             `json:"conditionalCreate"`
	ConditionalRead   string           `json:"conditionalRead"`
	ConditionalUpdate bool             `json:"conditionalUpdate"`
	ConditionalDelete string           `json:"conditionalDelete"`
	SearchParam       []capSearchParam `json:"searchParam,omitempty"`
}

type capSearchParam struct {
	Name       string `json:"name"`
	Definition string `json:"definition,omitempty"`
	Type       string `json:"type"`
}

// buildCapabilityStatement states exactly what this server does: JSON only, every R4 type with the
// interactions implemented here, and the search parameters that are indexed.
func (a *API) buildCapabilityStatement() ([]byte, error) {
	name := a.opts.Software
	if name == "" {
		name = "fhirgate"
	}
	cs := capabilityStatement{
		ResourceType: "CapabilityStatement",
		Status:       "active",
		Date:         a.opts.Now().UTC().Format("2006-01-02"),
		Publisher:    "fhirgate",
		Kind:         "instance",
		Software:     capSoftware{Name: name, Version: a.opts.Version},
		Implementation: capImplementaton{
			Description: "fhirgate secured FHIR R4 API",
			URL:         a.opts.BaseURL,
		},
		FHIRVersion: "4.0.1",
		Format:      []string{"application/fhir+json", "json"},
	}
	rest := capRest{Mode: "server", Security: a.opts.Security}
	rest.Interaction = []capInteraction{{Code: "history-system"}, {Code: "search-system"}}
	if a.opts.Bundles != nil {
		rest.Interaction = append([]capInteraction{{Code: "transaction"}, {Code: "batch"}}, rest.Interaction...)
	}
	for _, typ := range fhir.ResourceTypes() {
		res := capResource{
			Type: typ,
			Interaction: []capInteraction{
				{Code: "read"}, {Code: "vread"}, {Code: "update"}, {Code: "delete"},
				{Code: "history-instance"}, {Code: "history-type"}, {Code: "create"}, {Code: "search-type"},
			},
			Versioning:        "versioned-update",
			ReadHistory:       true,
			UpdateCreate:      true,
			ConditionalCreate: true,
			ConditionalRead:   "not-supported",
			ConditionalDelete: "not-supported",
		}
		for _, p := range a.opts.Registry.Params(typ) {
			if !searchable(p) {
				continue
			}
			res.SearchParam = append(res.SearchParam, capSearchParam{Name: p.Code, Definition: p.URL, Type: string(p.Type)})
		}
		rest.Resource = append(rest.Resource, res)
	}
	cs.Rest = []capRest{rest}
	return json.Marshal(cs)
}

// searchable reports whether the server indexes p (special parameters and those without an
// expression, like _text and _content, are not).
func searchable(p *search.Param) bool {
	return p.Type != search.TypeSpecial && p.Expression != ""
}
