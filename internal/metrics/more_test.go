package metrics

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

func TestTokensIssued(t *testing.T) {
	m := New()
	m.TokenIssued("authorization_code")
	m.TokenIssued("authorization_code")
	m.TokenIssued("client_credentials")
	m.TokenIssued("made-up-by-a-client")
	m.TokenIssued("")
	body := scrape(t, m)
	for _, want := range []string{
		`fhirgate_tokens_issued_total{grant="authorization_code"} 2`,
		`fhirgate_tokens_issued_total{grant="client_credentials"} 1`,
		`fhirgate_tokens_issued_total{grant="other"} 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %q", want)
		}
	}
	// Unknown grant types never become label values.
	if strings.Contains(body, "made-up") {
		t.Error("an unknown grant type became a label value")
	}
}

func TestRateLimitRejected(t *testing.T) {
	m := New()
	m.RateLimitRejected("fhir", "fhir-patient")
	m.RateLimitRejected("fhir", "fhir-patient")
	m.RateLimitRejected("oauth", "engine_unavailable")
	body := scrape(t, m)
	for _, want := range []string{
		`fhirgate_rate_limit_rejections_total{group="fhir",rule="fhir-patient"} 2`,
		`fhirgate_rate_limit_rejections_total{group="oauth",rule="engine_unavailable"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %q", want)
		}
	}
	if strings.Contains(body, `group="login"`) {
		t.Error("a group without rejections is reported")
	}
}

func TestStoreLatency(t *testing.T) {
	m := New()
	m.ObserveStore("fhir.read", 3*time.Millisecond, nil)
	m.ObserveStore("fhir.read", 2*time.Second, errors.New("boom"))
	done := m.TimeStore("fhir.search")
	done(nil)
	body := scrape(t, m)
	for _, want := range []string{
		`fhirgate_store_operation_duration_seconds_count{op="fhir.read",result="ok"} 1`,
		`fhirgate_store_operation_duration_seconds_bucket{op="fhir.read",result="ok",le="0.005"} 1`,
		`fhirgate_store_operation_duration_seconds_count{op="fhir.read",result="error"} 1`,
		`fhirgate_store_operation_duration_seconds_bucket{op="fhir.read",result="error",le="1"} 0`,
		`fhirgate_store_operation_duration_seconds_count{op="fhir.search",result="ok"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %q", want)
		}
	}
	if strings.Contains(body, "boom") {
		t.Error("the error text became a label")
	}
}
