package fhirapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/fhirapi"
)

// The search-shape limits answer 400 too-costly before any query runs; searches within them, and
// paging and format parameters, are not counted against them.
func TestSearchShapeLimits(t *testing.T) {
	c := newServerOpts(t, nil, func(o *fhirapi.Options) {
		o.Limits = fhirapi.Limits{MaxSearchParams: 4, MaxIncludes: 2}
	})
	c.create("Patient", alice)
	for _, tc := range []struct {
		name, query string
		want        int
		contains    string
	}{
		{"within both limits", "/Patient?family=liddell&gender=female&_include=Patient:organization&_count=5", 200, ""},
		{"format and pretty are free", "/Patient?family=liddell&gender=female&birthdate=1980-02-03&_count=5&_format=json&_pretty=true", 200, ""},
		{"one parameter too many", "/Patient?family=liddell&gender=female&birthdate=1980-02-03&name=alice&_count=5", 400, "at most 4"},
		{"repetitions count", "/Patient?name=a&name=l&name=i&name=c&name=e", 400, "at most 4"},
		{"too many includes", "/Patient?_include=Patient:organization&_include=Patient:general-practitioner&_revinclude=Observation:subject", 400, "_include/_revinclude"},
		{"include modifiers count as includes", "/Patient?_include:iterate=Patient:organization&_revinclude:iterate=Observation:subject&_include=Patient:link", 400, "_include/_revinclude"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.do("GET", tc.query, "")
			if tc.want != 200 {
				wantOutcome(t, r, tc.want, tc.contains)
				if !strings.Contains(string(r.body), "too-costly") {
					t.Errorf("issue code is not too-costly: %s", r.body)
				}
				return
			}
			if r.status != 200 {
				t.Fatalf("status = %d: %s", r.status, r.body)
			}
		})
	}
	// POST _search counts the form parameters the same way.
	req, _ := http.NewRequest("POST", c.base+"/Patient/_search", strings.NewReader("name=a&name=l&name=i&name=c&name=e"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("POST _search over the limit = %d, want 400", resp.StatusCode)
	}
}

// slowSearches holds every search until its context ends, as a query slower than any deadline
// would; reads and writes go straight to the store.
type slowSearches struct{ backend.Backend }

func (s slowSearches) Search(ctx context.Context, q *search.Query) (*search.Result, error) {
	<-ctx.Done()
	return s.Backend.Search(ctx, q)
}

// A read-only interaction past the query deadline is cancelled and answered 503 timeout with
// Retry-After; writes are not bounded by it, and the data they wrote is intact.
func TestQueryTimeout(t *testing.T) {
	c := newServerOpts(t, func(b backend.Backend) backend.Backend { return slowSearches{b} }, func(o *fhirapi.Options) {
		o.Limits = fhirapi.Limits{QueryTimeout: 50 * time.Millisecond}
	})
	id, _ := c.create("Patient", alice)
	start := time.Now()
	r := c.do("GET", "/Patient?family=liddell", "")
	wantOutcome(t, r, http.StatusServiceUnavailable, "took longer")
	if r.header.Get("Retry-After") == "" {
		t.Error("a timed-out search has no Retry-After")
	}
	if !strings.Contains(string(r.body), `"timeout"`) {
		t.Errorf("issue code is not timeout: %s", r.body)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the timed-out search took %s", took)
	}
	if r := c.do("GET", "/Patient/"+id, ""); r.status != http.StatusOK {
		t.Errorf("a read within the deadline = %d %s", r.status, r.body)
	}
}
