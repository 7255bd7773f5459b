package fhirapi

import (
	"net/url"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// parseSearch turns request parameters into a Query; warnings list what lenient handling ignored.
func (a *API) parseSearch(types []string, params url.Values, strict bool) (*search.Query, []fhir.Issue, error) {
	if err := a.opts.Limits.checkSearchShape(params); err != nil {
		return nil, nil, err
	}
	q, warnings, err := search.Parse(a.opts.Registry, types, params, search.ParseOptions{
		BaseURL:      a.opts.BaseURL,
		DefaultCount: a.opts.DefaultCount,
		MaxCount:     a.opts.MaxCount,
		Strict:       strict,
	})
	if err != nil {
		return nil, nil, err
	}
	var issues []fhir.Issue
	for _, w := range warnings {
		issues = append(issues, fhir.Issue{Severity: "warning", Code: "not-supported", Diagnostics: w})
	}
	return q, issues, nil
}
