package explain_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/explain"
	"github.com/fhirgate/fhirgate/internal/fhir/compartment"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/policy"
)

const (
	base       = "http://fhirgate.test/fhir"
	adminToken = "admin-token-0123456789"
	labs       = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
)

type keys struct{ key *ecdsa.PrivateKey }

func (k keys) PublicKeys(context.Context) (jose.JSONWebKeySet, error) {
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}}, nil
}

type noRevocations struct{}

func (noRevocations) Revoked(context.Context, string) (bool, error) { return false, nil }

type fixture struct {
	h   http.Handler
	key *ecdsa.PrivateKey
}

func newFixture(t *testing.T) *fixture { return newFixtureWith(t, nil) }

// newFixtureWith enforces security labels under lp (nil: none).
func newFixtureWith(t *testing.T, lp *policy.LabelPolicy) *fixture {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := search.DefaultRegistry()
	if err != nil {
		t.Fatal(err)
	}
	v, err := authn.NewVerifier(authn.Config{Issuer: "http://fhirgate.test", Audience: base, Keys: keys{key}, Revoker: noRevocations{}})
	if err != nil {
		t.Fatal(err)
	}
	matcher, err := search.NewMatcher(reg)
	if err != nil {
		t.Fatal(err)
	}
	membership, err := compartment.NewMembership(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	engine, err := policy.New(policy.Config{Registry: reg, Matcher: matcher, Membership: membership, BaseURL: base, Labels: lp})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{h: explain.New(explain.Config{Verifier: v, Policy: engine, Registry: reg, BaseURL: base, AdminToken: adminToken}), key: key}
}

func (f *fixture) token(t *testing.T, scope, patient string) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: f.key}, (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c := map[string]any{"iss": "http://fhirgate.test", "aud": base, "sub": "alice", "client_id": "app", "scope": scope,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": rand.Text()}
	if patient != "" {
		c["patient"] = patient
	}
	tok, err := jwt.Signed(signer).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (f *fixture) post(t *testing.T, admin string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req := httptest.NewRequest(http.MethodPost, explain.Path, strings.NewReader(string(b)))
	if admin != "" {
		req.Header.Set("Authorization", "Bearer "+admin)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("answer %d is not JSON: %s", rec.Code, rec.Body)
	}
	return rec.Code, out
}

func (f *fixture) explain(t *testing.T, body any) map[string]any {
	t.Helper()
	status, out := f.post(t, adminToken, body)
	if status != http.StatusOK {
		t.Fatalf("explain %v = %d %v", body, status, out)
	}
	return out
}

func field(m map[string]any, path ...string) any {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[p]
	}
	return cur
}

func strs(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

func TestExplainAdminOnly(t *testing.T) {
	f := newFixture(t)
	req := map[string]any{"method": "GET", "url": "/fhir/Patient"}
	if status, _ := f.post(t, "", req); status != http.StatusUnauthorized {
		t.Errorf("without the admin token = %d, want 401", status)
	}
	if status, _ := f.post(t, adminToken+"x", req); status != http.StatusUnauthorized {
		t.Errorf("with a wrong admin token = %d, want 401", status)
	}
	// A handler without an admin token refuses everything rather than answer anyone.
	open := explain.New(explain.Config{BaseURL: base})
	rec := httptest.NewRecorder()
	open.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, explain.Path, strings.NewReader(`{}`)))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("unconfigured handler = %d, want 503", rec.Code)
	}
	if status, _ := f.post(t, adminToken, map[string]any{"token": "x", "claims": map[string]any{}, "url": "/fhir/Patient"}); status != http.StatusBadRequest {
		t.Errorf("token and claims together = %d, want 400", status)
	}
	if status, _ := f.post(t, adminToken, map[string]any{"url": "/fhir/NotAType"}); status != http.StatusBadRequest {
		t.Errorf("unknown type = %d, want 400", status)
	}
	if status, _ := f.post(t, adminToken, map[string]any{"url": "http://elsewhere.example/fhir/Patient"}); status != http.StatusBadRequest {
		t.Errorf("URL on another base = %d, want 400", status)
	}
}

func TestExplainDecisions(t *testing.T) {
	f := newFixture(t)
	alice := f.token(t, "launch/patient patient/*.rs", "p1")
	tests := []struct {
		name        string
		req         map[string]any
		allow       bool
		status      int
		reason      string
		compartment string
		query       []string // must all be in narrowing.query
	}{
		{"patient search narrowed to the compartment",
			map[string]any{"token": alice, "method": "GET", "url": "/fhir/Observation?patient=p2"},
			true, 200, "compartment-narrowed", "Patient/p1", []string{"patient=p2"}},
		{"absolute URL and POST _search with a form",
			map[string]any{"token": alice, "method": "POST", "url": base + "/Observation/_search", "form": "code=http://loinc.org|4548-4"},
			true, 200, "compartment-narrowed", "Patient/p1", []string{"code=http://loinc.org|4548-4"}},
		{"another patient's compartment",
			map[string]any{"token": alice, "method": "GET", "url": "/fhir/Patient/p2/Observation"},
			false, 403, "outside-compartment", "", nil},
		{"another patient's $everything is hidden",
			map[string]any{"token": alice, "method": "GET", "url": "Patient/p2/$everything"},
			false, 404, "outside-compartment", "", nil},
		{"chain into a compartment type",
			map[string]any{"token": alice, "method": "GET", "url": "/fhir/Observation?subject:Patient.name=smith"},
			false, 403, "chain-not-permitted", "", nil},
		{"type history cannot be narrowed",
			map[string]any{"token": alice, "method": "GET", "url": "/fhir/Observation/_history"},
			true, 403, "compartment-narrowed", "Patient/p1", nil},
		{"read of a resource of another patient",
			map[string]any{"token": alice, "method": "GET", "url": "/fhir/Observation/o2",
				"resource": json.RawMessage(`{"resourceType":"Observation","id":"o2","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p2"}}`)},
			false, 404, "outside-compartment", "", nil},
		{"write with a read-only scope",
			map[string]any{"token": alice, "method": "DELETE", "url": "/fhir/Observation/o1"},
			false, 403, "scope-missing-interaction", "", nil},
		{"no token",
			map[string]any{"method": "GET", "url": "/fhir/Observation"},
			false, 401, "no-token", "", nil},
		{"what-if: patient scope without a patient fails closed",
			map[string]any{"claims": map[string]any{"sub": "x", "client_id": "c", "scope": "patient/*.rs"}, "method": "GET", "url": "/fhir/Observation"},
			false, 403, "patient-context-missing", "", nil},
		{"what-if: granular lab scope",
			map[string]any{"claims": map[string]any{"sub": "x", "client_id": "c", "scope": labs, "patient": "p1"}, "method": "GET", "url": "/fhir/Observation?code=4548-4"},
			true, 200, "granular-narrowed", "Patient/p1", []string{"code=4548-4", "category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := f.explain(t, tt.req)
			if got := field(out, "decision", "allow"); got != tt.allow {
				t.Errorf("allow = %v, want %v: %v", got, tt.allow, out)
			}
			if got := field(out, "status"); got != float64(tt.status) {
				t.Errorf("status = %v, want %d: %v", got, tt.status, out)
			}
			if reasons := strs(field(out, "decision", "reasons")); !slices.Contains(reasons, tt.reason) {
				t.Errorf("reasons = %v, want %s", reasons, tt.reason)
			}
			if tt.compartment != "" {
				if got := field(out, "narrowing", "compartment"); got != tt.compartment {
					t.Errorf("narrowing compartment = %v, want %s: %v", got, tt.compartment, out["narrowing"])
				}
			}
			query := strs(field(out, "narrowing", "query"))
			for _, q := range tt.query {
				if !slices.Contains(query, q) {
					t.Errorf("narrowed query %v lacks %s", query, q)
				}
			}
			_, whatIf := tt.req["claims"]
			if field(out, "what_if") != whatIf {
				t.Errorf("what_if = %v, want %v", field(out, "what_if"), whatIf)
			}
			if whatIf && !strings.Contains(field(out, "principal", "source").(string), "what-if") {
				t.Errorf("a what-if principal is not marked: %v", out["principal"])
			}
		})
	}
}

func TestExplainGranularClauses(t *testing.T) {
	f := newFixture(t)
	out := f.explain(t, map[string]any{"token": f.token(t, labs, "p1"), "method": "GET", "url": "/fhir/Observation"})
	clauses := strs(field(out, "narrowing", "clauses", "Observation"))
	want := "category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
	if len(clauses) != 1 || clauses[0] != want {
		t.Errorf("granular clauses = %v, want [%s]", clauses, want)
	}
	if got := field(out, "principal", "source"); got != "token" {
		t.Errorf("principal source = %v", got)
	}
	if s := field(out, "principal", "scopes"); len(strs(s)) != 1 {
		t.Errorf("scopes = %v", s)
	}
	// Another type is out of this token's reach, and the answer says so.
	out = f.explain(t, map[string]any{"token": f.token(t, labs, "p1"), "method": "GET", "url": "/fhir/Condition"})
	if reasons := strs(field(out, "decision", "reasons")); field(out, "decision", "allow") != false || !slices.Contains(reasons, "scope-missing-type") {
		t.Errorf("Condition with a lab scope = %v", out["decision"])
	}
}

func TestExplainBadToken(t *testing.T) {
	f := newFixture(t)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forged := (&fixture{key: other}).token(t, "system/*.rs", "")
	out := f.explain(t, map[string]any{"token": forged, "method": "GET", "url": "/fhir/Patient"})
	if field(out, "authentication", "ok") != false || field(out, "status") != float64(401) || field(out, "decision", "allow") != false {
		t.Errorf("forged token = %v", out)
	}
	if field(out, "principal") != nil {
		t.Errorf("a forged token's claims were reported as a principal: %v", out["principal"])
	}
}

func TestClauseStrings(t *testing.T) {
	reg, err := search.DefaultRegistry()
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][2]string{
		{"subject:Patient.name", "smith"},
		{"_has:Observation:patient:code", "4548-4"},
		{"code:not", "a,b\\,c"},
		{"date", "ge2020-01-01"},
	} {
		typ := "Observation"
		if strings.HasPrefix(kv[0], "_has") {
			typ = "Patient"
		}
		c, err := search.ParseClause(reg, []string{typ}, kv[0], kv[1], search.ParseOptions{})
		if err != nil {
			t.Fatal(kv, err)
		}
		if got, want := explain.Clause(c), kv[0]+"="+kv[1]; got != want {
			t.Errorf("Clause = %q, want %q", got, want)
		}
	}
	// The policy's filters on a chain's targets are shown link by link.
	c, err := search.ParseClause(reg, []string{"Observation"}, "subject:Patient.organization.name", "acme", search.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	label, err := search.ParseClause(reg, []string{"Patient"}, "_security:not", "http://s|V", search.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := search.ParseClause(reg, []string{"Organization"}, "partof", "Organization/x", search.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ref.Modifier = "not"
	c.Chain.Filter = []search.Clause{label}
	c.Chain.Clause.Chain.Filter = []search.Clause{label, ref}
	want := "subject:Patient.organization:Organization.name=acme [Patient: _security:not=http://s|V; Organization: _security:not=http://s|V & partof:not=Organization/x]"
	if got := explain.Clause(c); got != want {
		t.Errorf("Clause = %q, want %q", got, want)
	}
}

// TestExplainClearanceAndRedaction: what-if claims carry a clearance, and the answer for a read of
// a given resource says whether the client would get it whole, redacted (with the body it would
// get) or not at all.
func TestExplainClearanceAndRedaction(t *testing.T) {
	f := newFixtureWith(t, &policy.LabelPolicy{Redact: []policy.Redaction{
		{Labels: []string{"HIV"}, Elements: map[string][]string{"Observation": {"value[x]", "note"}}},
	}})
	obs := func(label string) json.RawMessage {
		return json.RawMessage(`{"resourceType":"Observation","id":"o1","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"` +
			label + `"}]},"status":"final","code":{"text":"viral load"},"subject":{"reference":"Patient/p1"},"valueQuantity":{"value":1200},"note":[{"text":"n"}]}`)
	}
	claims := func(sens ...string) map[string]any {
		return map[string]any{"scope": "user/*.rs", "fhirUser": "Practitioner/d1", "clearance": map[string]any{"confidentiality": "N", "sensitivity": sens}}
	}
	tests := []struct {
		name     string
		claims   map[string]any
		label    string
		allow    bool
		redacted bool
	}{
		{"cleared for HIV: whole", claims("HIV"), "HIV", true, false},
		{"not cleared, HIV redacted", claims(), "HIV", true, true},
		{"not cleared, PSY hidden", claims(), "PSY", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := f.explain(t, map[string]any{"claims": tt.claims, "method": "GET", "url": "/fhir/Observation/o1", "resource": obs(tt.label)})
			if field(out, "decision", "allow") != tt.allow || (out["redacted"] == true) != tt.redacted {
				t.Fatalf("allow %v redacted %v, want %v %v: %v", field(out, "decision", "allow"), out["redacted"], tt.allow, tt.redacted, out)
			}
			released, _ := out["released"].(map[string]any)
			switch {
			case !tt.allow && (released != nil || field(out, "status") != float64(404)):
				t.Errorf("hidden resource: status %v, released %v", field(out, "status"), released)
			case tt.redacted && (released["valueQuantity"] != nil || released["note"] != nil):
				t.Errorf("redacted body keeps removed elements: %v", released)
			case tt.allow && !tt.redacted && released["valueQuantity"] == nil:
				t.Errorf("whole body lost its value: %v", released)
			}
		})
	}
	bad := map[string]any{"scope": "user/*.rs", "fhirUser": "Practitioner/d1", "clearance": map[string]any{"confidentiality": "TOP"}}
	if st, _ := f.post(t, adminToken, map[string]any{"claims": bad, "method": "GET", "url": "/fhir/Observation/o1"}); st != 400 {
		t.Errorf("a bad clearance claim = %d", st)
	}
}
