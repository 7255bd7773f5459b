package app

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// careTeamSource finds the patients a practitioner cares for (the care-team user access
// strategy): CareTeam participants, general practitioners and Encounter participants, through the
// practitioner and every PractitionerRole of theirs.
type careTeamSource struct {
	b   backend.Backend
	reg *search.Registry
}

// CareTeamPatients implements policy.CareTeamSource.
func (c careTeamSource) CareTeamPatients(ctx context.Context, practitionerRef string, limit int) ([]string, error) {
	refs := []string{practitionerRef}
	if strings.HasPrefix(practitionerRef, "Practitioner/") {
		roles, err := c.ids(ctx, "PractitionerRole", url.Values{"practitioner": {practitionerRef}}, limit)
		if err != nil {
			return nil, err
		}
		for _, id := range roles {
			refs = append(refs, "PractitionerRole/"+id)
		}
	}
	seen := map[string]bool{}
	var out []string
	add := func(typ string, params url.Values, patientOf func(body []byte) []string) error {
		res, err := c.search(ctx, typ, params, limit+1)
		if err != nil {
			return err
		}
		for _, m := range res.Matches {
			ids := []string{m.ID}
			if patientOf != nil {
				ids = patientOf(m.Body)
			}
			for _, id := range ids {
				if !seen[id] {
					seen[id] = true
					out = append(out, id)
				}
			}
		}
		return nil
	}
	joined := strings.Join(refs, ",")
	if err := add("Patient", url.Values{"general-practitioner": {joined}}, nil); err != nil {
		return nil, err
	}
	if err := add("CareTeam", url.Values{"participant": {joined}}, subjectPatients); err != nil {
		return nil, err
	}
	if err := add("Encounter", url.Values{"participant": {joined}}, subjectPatients); err != nil {
		return nil, err
	}
	if len(out) > limit+1 {
		out = out[:limit+1]
	}
	return out, nil
}

func (c careTeamSource) ids(ctx context.Context, typ string, params url.Values, limit int) ([]string, error) {
	res, err := c.search(ctx, typ, params, limit)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(res.Matches))
	for _, m := range res.Matches {
		ids = append(ids, m.ID)
	}
	return ids, nil
}

func (c careTeamSource) search(ctx context.Context, typ string, params url.Values, count int) (*search.Result, error) {
	params.Set("_count", strconv.Itoa(count))
	q, _, err := search.Parse(c.reg, []string{typ}, params, search.ParseOptions{DefaultCount: count, MaxCount: count, Strict: true})
	if err != nil {
		return nil, err
	}
	return c.b.Search(ctx, q)
}

// subjectPatients reads the Patient id of a CareTeam's or Encounter's subject.
func subjectPatients(body []byte) []string {
	var res struct {
		Subject struct{ Reference string } `json:"subject"`
	}
	if json.Unmarshal(body, &res) != nil {
		return nil
	}
	if id, ok := strings.CutPrefix(res.Subject.Reference, "Patient/"); ok && id != "" {
		return []string{id}
	}
	return nil
}
