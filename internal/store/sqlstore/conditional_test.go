package sqlstore_test

import (
	"context"
	"net/url"
	"sync"
	"testing"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// Two instances racing the same conditional create (If-None-Exist) create one resource; every
// other caller gets that resource back with created=false. Different criteria do not wait on
// each other's outcome.
func TestPostgresConditionalCreateAcrossInstances(t *testing.T) {
	ctx := context.Background()
	stores := openInstances(t, 2)
	reg, err := search.DefaultRegistry()
	if err != nil {
		t.Fatal(err)
	}
	criteria := func(mrn string) *search.Query {
		v, _ := url.ParseQuery("identifier=urn:mrn|" + mrn)
		q, _, err := search.Parse(reg, []string{"Patient"}, v, search.ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	for round, mrn := range []string{"A1", "B2", "C3"} {
		const callers = 8
		var wg sync.WaitGroup
		ids := make([]string, callers)
		created := make([]bool, callers)
		errs := make([]error, callers)
		start := make(chan struct{})
		for i := range callers {
			wg.Go(func() {
				<-start
				body := []byte(`{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"` + mrn + `"}]}`)
				res, c, err := stores[i%2].Create(ctx, "Patient", body, backend.CreateOptions{IfNoneExist: criteria(mrn)})
				errs[i], created[i] = err, c
				if err == nil {
					ids[i] = res.ID
				}
			})
		}
		close(start)
		wg.Wait()
		n := 0
		for i := range callers {
			if errs[i] != nil {
				t.Fatalf("round %d caller %d: %v", round, i, errs[i])
			}
			if created[i] {
				n++
			}
			if ids[i] != ids[0] {
				t.Errorf("round %d: callers got different resources %s and %s", round, ids[0], ids[i])
			}
		}
		if n != 1 {
			t.Errorf("round %d: %d of %d racing conditional creates created, want 1", round, n, callers)
		}
		res, err := stores[0].Search(ctx, criteria(mrn))
		if err != nil || len(res.Matches) != 1 {
			t.Errorf("round %d: %d Patients with the identifier (%v), want 1", round, len(res.Matches), err)
		}
	}
}
