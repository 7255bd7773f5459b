package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestInstrument(t *testing.T) {
	m := New()
	h := m.Instrument("fhir", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNotFound)
	}))
	for range 3 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/fhir/Patient/x", nil))
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("BREW", "/fhir", nil))
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`fhirgate_http_requests_total{code="404",group="fhir",method="GET"} 3`,
		`fhirgate_http_requests_total{code="404",group="fhir",method="OTHER"} 1`,
		`fhirgate_http_request_duration_seconds_count{group="fhir",method="GET"} 3`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestDecisions(t *testing.T) {
	m := New()
	m.Decision("read", true, "scope-granted")
	m.Decision("read", false, "outside-compartment")
	m.Decision("read", false, "outside-compartment")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `fhirgate_access_decisions_total{interaction="read",reason="outside-compartment",result="deny"} 2`) {
		t.Errorf("decision metrics missing:\n%s", rec.Body.String())
	}
}
