package app

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/internal/authserver"
	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// patientLister serves the patient picker and the EHR launcher from the FHIR store.
type patientLister struct {
	b   backend.Backend
	reg *search.Registry
}

// ListPatients finds patients whose name starts with query (every patient when empty), sorted
// by family name.
func (p patientLister) ListPatients(ctx context.Context, query string, limit int) ([]authserver.PatientSummary, error) {
	params := url.Values{"_count": {strconv.Itoa(limit)}, "_sort": {"family"}}
	if q := strings.TrimSpace(query); q != "" {
		params.Set("name", q)
	}
	q, _, err := search.Parse(p.reg, []string{"Patient"}, params, search.ParseOptions{DefaultCount: limit, MaxCount: max(limit, 1)})
	if err != nil {
		return nil, err
	}
	res, err := p.b.Search(ctx, q)
	if err != nil {
		return nil, err
	}
	out := make([]authserver.PatientSummary, 0, len(res.Matches))
	for _, m := range res.Matches {
		var pt struct {
			Name []struct {
				Text   string   `json:"text"`
				Family string   `json:"family"`
				Given  []string `json:"given"`
			} `json:"name"`
			BirthDate string `json:"birthDate"`
			Gender    string `json:"gender"`
		}
		if err := json.Unmarshal(m.Body, &pt); err != nil {
			continue
		}
		name := ""
		if len(pt.Name) > 0 {
			n := pt.Name[0]
			name = n.Text
			if name == "" {
				name = strings.TrimSpace(strings.Join(n.Given, " ") + " " + n.Family)
			}
		}
		out = append(out, authserver.PatientSummary{ID: m.ID, Name: name, BirthDate: pt.BirthDate, Gender: pt.Gender})
	}
	return out, nil
}
