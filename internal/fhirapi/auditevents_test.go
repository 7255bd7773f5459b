package fhirapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/fhir/compartment"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/fhir/validate"
	"github.com/fhirgate/fhirgate/internal/policy"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// auditWorld is the API with a real audit trail on a real store, the real verifier and policy
// engine, and tokens signed like the authorization server's (with roles).
type auditWorld struct {
	t      *testing.T
	base   string
	key    *ecdsa.PrivateKey
	issuer string
	trail  *audit.Trail
	admin  string
	p1, p2 string
	p1Obs  string
	p2Obs  string
}

type auditClaims struct {
	scope, patient, fhirUser, sub, client string
	roles                                 []string
}

func (w *auditWorld) PublicKeys(context.Context) (jose.JSONWebKeySet, error) {
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &w.key.PublicKey, KeyID: "k", Algorithm: "ES256", Use: "sig"}}}, nil
}

type notRevoked struct{}

func (notRevoked) Revoked(context.Context, string) (bool, error) { return false, nil }

func (w *auditWorld) token(c auditClaims) string {
	w.t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: w.key},
		(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", "k"))
	if err != nil {
		w.t.Fatal(err)
	}
	now := time.Now()
	body := map[string]any{
		"iss": w.issuer, "aud": w.base, "sub": cmp(c.sub, "tester"), "client_id": cmp(c.client, "test-client"), "scope": c.scope,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": rand.Text(),
	}
	if c.patient != "" {
		body["patient"] = c.patient
	}
	if c.fhirUser != "" {
		body["fhirUser"] = c.fhirUser
	}
	if c.roles != nil {
		body["roles"] = c.roles
	}
	tok, err := jwt.Signed(signer).Claims(body).Serialize()
	if err != nil {
		w.t.Fatal(err)
	}
	return tok
}

func cmp(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func newAuditWorld(t *testing.T) *auditWorld {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg, err := search.DefaultRegistry()
	if err != nil {
		t.Fatal(err)
	}
	store, err := sqlstore.Open(context.Background(), sqlstore.Options{Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "db"), Registry: reg, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	v, err := validate.New()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	w := &auditWorld{t: t, base: "http://" + srv.Listener.Addr().String() + "/fhir"}
	w.issuer = strings.TrimSuffix(w.base, "/fhir")
	if w.key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	verifier, err := authn.NewVerifier(authn.Config{Issuer: w.issuer, Audience: w.base, Keys: w, Revoker: notRevoked{}})
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
	engine, err := policy.New(policy.Config{Registry: reg, Matcher: matcher, Membership: membership, BaseURL: w.base})
	if err != nil {
		t.Fatal(err)
	}
	w.trail, err = audit.Open(context.Background(), audit.Options{Store: store, Logger: quiet, Source: audit.Source{Observer: w.issuer}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.trail.Close(context.Background()) })
	api, err := New(Options{
		Backend: store, Registry: reg, Validator: v, BaseURL: w.base, DefaultCount: 10, MaxCount: 100,
		Authenticator: verifier, Policy: engine, Audit: w.trail, AuditLog: store, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	// The route search.go's searchCompartment dispatches to accessLog once wired; mounted here so
	// that the handler is tested through adapt (authentication, audit) either way.
	mux.Handle("GET /fhir/Patient/{id}/$access-log", api.adapt(audit.ActionOperation, func(rw http.ResponseWriter, r *http.Request) error {
		return api.accessLog(rw, r, r.PathValue("id"))
	}))
	mux.Handle("/", api)
	srv.Config.Handler = mux
	srv.Start()
	t.Cleanup(srv.Close)

	w.admin = w.token(auditClaims{scope: "system/*.cruds", client: "loader"})
	w.p1 = w.create(w.admin, `{"resourceType":"Patient","name":[{"family":"One"}]}`)
	w.p2 = w.create(w.admin, `{"resourceType":"Patient","name":[{"family":"Two"}]}`)
	obs := `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/%s"}}`
	w.p1Obs = w.create(w.admin, fmt.Sprintf(obs, w.p1))
	w.p2Obs = w.create(w.admin, fmt.Sprintf(obs, w.p2))
	return w
}

type auditResp struct {
	status int
	body   []byte
}

func (w *auditWorld) get(tok, path string) auditResp {
	w.t.Helper()
	target := path
	if !strings.HasPrefix(path, "http") {
		target = w.base + path
	}
	req, _ := http.NewRequest("GET", target, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("User-Agent", "audit-test/1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return auditResp{resp.StatusCode, b}
}

func (w *auditWorld) create(tok, body string) string {
	w.t.Helper()
	typ := strings.Split(strings.Split(body, `"resourceType":"`)[1], `"`)[0]
	req, _ := http.NewRequest("POST", w.base+"/"+typ, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	var res struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || resp.StatusCode != 201 {
		w.t.Fatalf("create %s = %d %v", typ, resp.StatusCode, err)
	}
	return res.ID
}

type auditBundle struct {
	ResourceType, Type string
	Link               []struct{ Relation, URL string }
	Entry              []struct {
		FullURL  string
		Resource json.RawMessage
	}
}

func (b auditBundle) next() string {
	for _, l := range b.Link {
		if l.Relation == "next" {
			return l.URL
		}
	}
	return ""
}

func (w *auditWorld) bundle(tok, path string) auditBundle {
	w.t.Helper()
	r := w.get(tok, path)
	if r.status != 200 {
		w.t.Fatalf("GET %s = %d %s", path, r.status, r.body)
	}
	var b auditBundle
	if err := json.Unmarshal(r.body, &b); err != nil || b.Type != "searchset" {
		w.t.Fatalf("GET %s: not a searchset: %s", path, r.body)
	}
	return b
}

func TestAuditEventsNeedTheAuditorRole(t *testing.T) {
	w := newAuditWorld(t)
	auditor := w.token(auditClaims{scope: "user/AuditEvent.rs", sub: "carol", fhirUser: "Practitioner/aud1", roles: []string{"auditor"}})
	for _, tc := range []struct {
		name   string
		tok    string
		status int
	}{
		{"system scope without the role", w.admin, 403},
		{"another role", w.token(auditClaims{scope: "user/*.rs", sub: "drsmith", fhirUser: "Practitioner/x", roles: []string{"clinician"}}), 403},
		{"role without a scope reaching AuditEvent", w.token(auditClaims{scope: "user/Patient.rs", sub: "carol", roles: []string{"auditor"}}), 403},
		{"role with a patient-bounded scope", w.token(auditClaims{scope: "patient/*.rs", patient: w.p1, roles: []string{"auditor"}}), 403},
		{"auditor", auditor, 200},
		{"backend service with the role", w.token(auditClaims{scope: "system/AuditEvent.rs", client: "siem", sub: "siem", roles: []string{"auditor"}}), 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := w.get(tc.tok, "/AuditEvent"); r.status != tc.status {
				t.Fatalf("search = %d, want %d: %s", r.status, tc.status, r.body)
			}
		})
	}
	// Reads follow the same rule.
	b := w.bundle(auditor, "/AuditEvent?_count=1")
	var ae struct{ ID string }
	if len(b.Entry) != 1 || json.Unmarshal(b.Entry[0].Resource, &ae) != nil {
		t.Fatalf("no AuditEvent: %+v", b)
	}
	if r := w.get(auditor, "/AuditEvent/"+ae.ID); r.status != 200 {
		t.Errorf("auditor read = %d", r.status)
	}
	if r := w.get(w.admin, "/AuditEvent/"+ae.ID); r.status != 403 {
		t.Errorf("read without the role = %d, want 403", r.status)
	}
	// Refusals are recorded with their reason.
	denied := w.bundle(auditor, "/AuditEvent?outcome=denied&agent=loader&_count=100")
	found := false
	for _, e := range denied.Entry {
		if strings.Contains(string(e.Resource), reasonNotAuditor) {
			found = true
		}
	}
	if !found {
		t.Errorf("no denied AuditEvent with reason %s: %d denied entries", reasonNotAuditor, len(denied.Entry))
	}
}

func TestAuditEventSearchParameters(t *testing.T) {
	w := newAuditWorld(t)
	auditor := w.token(auditClaims{scope: "user/AuditEvent.rs", sub: "carol", fhirUser: "Practitioner/aud1", roles: []string{"auditor"}})
	doc := w.token(auditClaims{scope: "user/*.rs", sub: "drsmith", client: "ehr", fhirUser: "Practitioner/x", roles: []string{"clinician"}})
	start := time.Now().UTC().Add(-time.Second)
	if r := w.get(doc, "/Observation/"+w.p1Obs); r.status != 200 {
		t.Fatalf("read = %d %s", r.status, r.body)
	}
	if r := w.get(doc, "/Observation/"+w.p2Obs); r.status != 200 {
		t.Fatalf("read = %d", r.status)
	}
	if r := w.get(doc, "/Observation?_count=notanumber"); r.status != 400 {
		t.Fatalf("bad search = %d", r.status)
	}
	if err := w.trail.Record(context.Background(), audit.Event{Action: audit.ActionLogin, Status: 200, Subject: "drsmith", ClientID: "ehr"}); err != nil {
		t.Fatal(err)
	}
	count := func(q string) int {
		t.Helper()
		n := 0
		for next := "/AuditEvent?" + q; next != ""; {
			b := w.bundle(auditor, next)
			n += len(b.Entry)
			next = b.next()
		}
		return n
	}
	for _, tc := range []struct {
		q    string
		want int
	}{
		{"agent=ehr", 4},                  // 3 requests and the login
		{"agent=Practitioner/x", 3},       // the login event has no fhirUser
		{"agent=ehr&type=110114", 1},      // the login
		{"agent=ehr&type=rest", 3},        // the requests
		{"agent=ehr&type=rest,110114", 4}, // either
		{"agent=ehr&type=" + url.QueryEscape("http://dicom.nema.org/resources/ontology/DCM|110114"), 1},
		{"agent=ehr&outcome=failure", 1},     // the bad search
		{"entity=Observation/" + w.p1Obs, 2}, // its create and the read
		{"entity=Patient/" + w.p2, 3},        // create of the patient, of its observation, the read
		{"patient=" + w.p2 + "&agent=ehr", 1},
		{"agent=ehr&date=ge" + start.Format(time.RFC3339), 4},
		{"agent=ehr&date=lt" + start.Format(time.RFC3339), 0},
		{"agent=ehr&type=rest&_count=1", 3}, // paging through the unindexed condition
		{"type=110113", 0},
	} {
		if got := count(tc.q); got != tc.want {
			t.Errorf("AuditEvent?%s: %d entries, want %d", tc.q, got, tc.want)
		}
	}
	for _, q := range []string{"type=999", "type=http://example.org|rest", "entity=Observation", "foo=bar", "type=rest&type=110114"} {
		if r := w.get(auditor, "/AuditEvent?"+q); r.status != 400 {
			t.Errorf("AuditEvent?%s = %d, want 400", q, r.status)
		}
	}
}

func TestAccessLogIsThePatientsAccountingOfDisclosures(t *testing.T) {
	w := newAuditWorld(t)
	doc := w.token(auditClaims{scope: "user/*.rs", sub: "drsmith", client: "ehr", fhirUser: "Practitioner/x", roles: []string{"clinician"}})
	for _, p := range []string{"/Observation/" + w.p1Obs, "/Observation/" + w.p2Obs, "/Observation?subject=Patient/" + w.p1 + "&code=8867-4"} {
		if r := w.get(doc, p); r.status != 200 {
			t.Fatalf("GET %s = %d", p, r.status)
		}
	}
	if r := w.get(doc, "/Observation?_id="+w.p1Obs+","+w.p2Obs); r.status != 200 { // both patients at once
		t.Fatalf("search = %d", r.status)
	}
	patient := w.token(auditClaims{scope: "launch/patient patient/*.rs", patient: w.p1, sub: "alice", client: "phr", fhirUser: "Patient/" + w.p1, roles: []string{"patient"}})
	path := "/Patient/" + w.p1 + "/$access-log"

	var all []json.RawMessage
	for next := path + "?_count=2"; next != ""; {
		b := w.bundle(patient, next)
		for _, e := range b.Entry {
			all = append(all, e.Resource)
		}
		next = b.next()
	}
	// Creates of the patient and of its observation by the loader, the clinician's read, the
	// search of p1's observations and the search returning both patients.
	if len(all) != 5 {
		t.Fatalf("access log has %d entries, want 5", len(all))
	}
	var sawRead, sawMixed bool
	for _, raw := range all {
		s := string(raw)
		for _, leak := range []string{"network", "query", "tokenId", "XrequestId", "User-Agent", "audit-test", "Patient/" + w.p2, "Observation/" + w.p2Obs} {
			if strings.Contains(s, leak) {
				t.Errorf("access log entry shows %q: %s", leak, s)
			}
		}
		var ae struct {
			Agent []struct {
				Who struct {
					Reference  string
					Identifier *struct{ Value string }
				}
			}
			Entity []struct{ What struct{ Reference string } }
		}
		if err := json.Unmarshal(raw, &ae); err != nil {
			t.Fatal(err)
		}
		var refs []string
		for _, e := range ae.Entity {
			refs = append(refs, e.What.Reference)
		}
		if !slices.Contains(refs, "Patient/"+w.p1) {
			t.Errorf("entry does not name the patient: %s", s)
		}
		if len(ae.Agent) > 0 && ae.Agent[0].Who.Reference == "Practitioner/x" {
			if slices.Contains(refs, "Observation/"+w.p1Obs) {
				sawRead = true
			} else {
				sawMixed = true // a search over both patients: its resources are withheld
			}
		}
	}
	if !sawRead || !sawMixed {
		t.Errorf("access log misses the clinician's accesses (read %v, mixed search %v)", sawRead, sawMixed)
	}

	// Only the patient, for their own record.
	for _, tc := range []struct {
		name   string
		tok    string
		path   string
		status int
	}{
		{"another patient's log", patient, "/Patient/" + w.p2 + "/$access-log", 403},
		{"clinician with the patient in context", w.token(auditClaims{scope: "launch/patient user/*.rs", patient: w.p1, fhirUser: "Practitioner/x"}), path, 403},
		{"clinician token without fhirUser", w.token(auditClaims{scope: "launch/patient patient/*.rs user/Observation.rs", patient: w.p1}), path, 403},
		{"practitioner user with patient scopes", w.token(auditClaims{scope: "launch/patient patient/*.rs", patient: w.p1, fhirUser: "Practitioner/x"}), path, 403},
		{"system token", w.admin, path, 403},
		{"unsupported parameter", patient, path + "?agent=ehr", 400},
		{"patient app without fhirUser", w.token(auditClaims{scope: "launch/patient patient/Patient.rs", patient: w.p1}), path, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := w.get(tc.tok, tc.path); r.status != tc.status {
				t.Errorf("GET %s = %d, want %d: %s", tc.path, r.status, tc.status, r.body)
			}
		})
	}

	// The patient's own look at the log is itself recorded.
	auditor := w.token(auditClaims{scope: "user/AuditEvent.rs", sub: "carol", fhirUser: "Practitioner/aud1", roles: []string{"auditor"}})
	b := w.bundle(auditor, "/AuditEvent?agent=phr&subtype=operation&_count=100")
	if len(b.Entry) == 0 || !strings.Contains(string(b.Entry[0].Resource), `"access-log"`) {
		t.Errorf("the $access-log requests are not in the trail: %d entries", len(b.Entry))
	}
}
