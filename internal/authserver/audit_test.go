package authserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/authserver"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// memRecorder is an audit.Recorder keeping events in memory; with fail set it refuses them.
type memRecorder struct {
	mu     sync.Mutex
	events []audit.Event
	fail   atomic.Bool
}

func (m *memRecorder) Record(_ context.Context, e audit.Event) error {
	if m.fail.Load() {
		return errors.New("trail down")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, e)
	return nil
}

// take returns the events recorded so far and forgets them.
func (m *memRecorder) take() []audit.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.events
	m.events = nil
	return out
}

func auditEnv(t *testing.T, mutate ...func(*authserver.Config)) (*env, *memRecorder) {
	rec := &memRecorder{}
	e := newEnv(t, append([]func(*authserver.Config){func(c *authserver.Config) { c.Audit = rec }}, mutate...)...)
	return e, rec
}

// only returns the single event with action a among evs.
func only(t *testing.T, evs []audit.Event, a audit.Action) audit.Event {
	t.Helper()
	var got []audit.Event
	for _, e := range evs {
		if e.Action == a {
			got = append(got, e)
		}
	}
	if len(got) != 1 {
		t.Fatalf("want one %s event, got %d in %+v", a, len(got), evs)
	}
	return got[0]
}

// checkRequest checks the request fields every event carries in these tests.
func checkRequest(t *testing.T, e audit.Event) {
	t.Helper()
	if e.SourceIP != "127.0.0.1" || !strings.HasPrefix(e.UserAgent, "Go-http-client/") {
		t.Errorf("%s: source %q agent %q", e.Action, e.SourceIP, e.UserAgent)
	}
}

// noSecrets fails when any recorded event contains one of the secrets.
func noSecrets(t *testing.T, evs []audit.Event, secrets ...string) {
	t.Helper()
	data, _ := json.Marshal(evs)
	for _, s := range secrets {
		if s != "" && strings.Contains(string(data), s) {
			t.Errorf("an audit event carries a secret %q", s)
		}
	}
}

func TestAuditLoginAndConsent(t *testing.T) {
	e, rec := auditEnv(t, func(c *authserver.Config) {
		c.Auth.Login = config.LoginThrottle{MaxFailuresPerAccount: 2, MaxFailuresPerIP: 1000, Window: 15 * time.Minute}
	})
	redirect := e.appURL + "/callback"
	_, challenge := pkcePair()
	params := e.authParams("public-app", redirect, "launch/patient patient/Patient.rs", challenge)

	// A wrong password: login denied, with the typed username and never the password.
	_, p := e.authorize(e.browser(), params, flowOpts{user: "drsmith", pw: "wrong-password-1"})
	if p.status != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", p.status)
	}
	ev := only(t, rec.take(), audit.ActionLogin)
	if ev.Outcome != audit.OutcomeDenied || ev.Status != 401 || ev.Subject != "drsmith" || ev.ClientID != "public-app" ||
		!slices.Equal(ev.Reasons, []string{"bad-credentials"}) {
		t.Errorf("failed login %+v", ev)
	}
	checkRequest(t, ev)
	// Throttled: denied with its own reason.
	e.authorize(e.browser(), params, flowOpts{user: "drsmith", pw: "wrong-password-2"})
	rec.take()
	_, p = e.authorize(e.browser(), params, flowOpts{user: "drsmith", pw: drPW})
	if p.status != http.StatusTooManyRequests {
		t.Fatalf("throttle: %d", p.status)
	}
	if ev := only(t, rec.take(), audit.ActionLogin); ev.Outcome != audit.OutcomeDenied || ev.Status != 429 || !slices.Contains(ev.Reasons, "login-throttled") {
		t.Errorf("throttled login %+v", ev)
	}

	// Success: login then consent given, with the user, the patient in context and the client.
	loc, p := e.authorize(e.browser(), params, flowOpts{user: "alice", pw: alicePW})
	if loc == nil || loc.Query().Get("code") == "" {
		t.Fatalf("no code: %d %s", p.status, p.body)
	}
	evs := rec.take()
	if len(evs) != 2 || evs[0].Action != audit.ActionLogin || evs[1].Action != audit.ActionConsentGiven {
		t.Fatalf("events %+v", evs)
	}
	login, consent := evs[0], evs[1]
	if login.Outcome != audit.OutcomeSuccess || login.Subject != "alice" || login.FHIRUser != "Patient/alice" || login.ClientID != "public-app" {
		t.Errorf("login %+v", login)
	}
	if consent.Outcome != audit.OutcomeSuccess || consent.Subject != "alice" || consent.ClientID != "public-app" ||
		!slices.Equal(consent.Patients, []string{"alice"}) || consent.Status != http.StatusSeeOther && consent.Status != http.StatusFound {
		t.Errorf("consent given %+v", consent)
	}
	checkRequest(t, consent)
	noSecrets(t, evs, alicePW, loc.Query().Get("code"))

	// Withheld: the user declines (the login session is reused, so no login event).
	b := e.browser()
	e.authorize(b, params, flowOpts{user: "alice", pw: alicePW})
	rec.take()
	loc, _ = e.authorize(b, params, flowOpts{deny: true})
	if loc == nil || loc.Query().Get("error") != "access_denied" {
		t.Fatalf("deny: %v", loc)
	}
	evs = rec.take()
	ev = only(t, evs, audit.ActionConsentWithheld)
	if len(evs) != 1 || ev.Outcome != audit.OutcomeDenied || ev.Subject != "alice" || ev.ClientID != "public-app" ||
		!slices.Equal(ev.Reasons, []string{"access_denied", "user-denied"}) {
		t.Errorf("consent withheld %+v", evs)
	}

	// Logout: the session's user.
	pg := b.get(e.issuer + "/auth/grants")
	if pg.status != 200 {
		t.Fatalf("grants page %d", pg.status)
	}
	f := pg.form(t, "/auth/logout")
	if p := b.post(f.action, f.fields); p.status != 200 {
		t.Fatalf("logout %d", p.status)
	}
	if ev := only(t, rec.take(), audit.ActionLogout); ev.Outcome != audit.OutcomeSuccess || ev.Subject != "alice" || ev.FHIRUser != "Patient/alice" {
		t.Errorf("logout %+v", ev)
	}
}

func TestAuditTokens(t *testing.T) {
	e, rec := auditEnv(t)
	code, verifier, redirect := codeFor(t, e, "launch/patient offline_access patient/Patient.rs")
	rec.take()
	st, tok := exchange(t, e, code, verifier, redirect, nil)
	if st != 200 {
		t.Fatalf("%d %v", st, tok)
	}
	at, rt1 := tok["access_token"].(string), tok["refresh_token"].(string)
	jti := checkAccessToken(t, e, at).ID
	ev := only(t, rec.take(), audit.ActionTokenIssued)
	if ev.Outcome != audit.OutcomeSuccess || ev.Status != 200 || ev.TokenID != jti || ev.ClientID != "public-app" || ev.Subject != "alice" ||
		ev.FHIRUser != "Patient/alice" || !slices.Equal(ev.Patients, []string{"alice"}) || !slices.Equal(ev.Reasons, []string{"authorization_code"}) {
		t.Errorf("issued %+v", ev)
	}
	checkRequest(t, ev)
	var all []audit.Event
	all = append(all, ev)

	// Replayed code: refused, denied with the OAuth error code.
	if st, _ := exchange(t, e, code, verifier, redirect, nil); st != 400 {
		t.Fatalf("replay %d", st)
	}
	ev = only(t, rec.take(), audit.ActionTokenIssued)
	if ev.Outcome != audit.OutcomeDenied || ev.Status != 400 || ev.ClientID != "public-app" || !slices.Equal(ev.Reasons, []string{"invalid_grant", "authorization_code"}) {
		t.Errorf("replay %+v", ev)
	}
	all = append(all, ev)

	// Fresh grant for refresh, revoke and introspection.
	code, verifier, redirect = codeFor(t, e, "launch/patient offline_access patient/Patient.rs")
	_, tok = exchange(t, e, code, verifier, redirect, nil)
	at2first := at
	at, rt := tok["access_token"].(string), tok["refresh_token"].(string)
	all = append(all, rec.take()...)
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"public-app"}}
	st, r2, _ := postForm(t, e.issuer+"/auth/token", refresh, "", "")
	if st != 200 {
		t.Fatalf("refresh %d %v", st, r2)
	}
	at2 := r2["access_token"].(string)
	ev = only(t, rec.take(), audit.ActionTokenRefreshed)
	if ev.Outcome != audit.OutcomeSuccess || ev.TokenID != checkAccessToken(t, e, at2).ID || ev.Subject != "alice" ||
		!slices.Equal(ev.Patients, []string{"alice"}) || !slices.Equal(ev.Reasons, []string{"refresh_token"}) {
		t.Errorf("refreshed %+v", ev)
	}
	all = append(all, ev)
	// Refused refresh (the rotated token again).
	if st, _, _ := postForm(t, e.issuer+"/auth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"bm90LWEtdG9rZW4"}, "client_id": {"public-app"}}, "", ""); st != 400 {
		t.Fatalf("bad refresh %d", st)
	}
	ev = only(t, rec.take(), audit.ActionTokenRefreshed)
	if ev.Outcome != audit.OutcomeDenied || ev.ClientID != "public-app" || !slices.Equal(ev.Reasons, []string{"invalid_grant", "refresh_token"}) {
		t.Errorf("refused refresh %+v", ev)
	}
	all = append(all, ev)

	// Introspection by the confidential client: the caller, the token's user, patient and jti.
	if introspect(t, e, at2)["active"] != true {
		t.Fatal("not active")
	}
	ev = only(t, rec.take(), audit.ActionTokenIntrospected)
	if ev.Outcome != audit.OutcomeSuccess || ev.ClientID != "conf-app" || ev.Subject != "alice" || ev.TokenID != checkAccessToken(t, e, at2).ID ||
		!slices.Equal(ev.Patients, []string{"alice"}) || !slices.Contains(ev.Reasons, "active") {
		t.Errorf("introspected %+v", ev)
	}
	all = append(all, ev)
	// Unauthenticated introspection: denied.
	if st, _, _ := postForm(t, e.issuer+"/auth/introspect", url.Values{"token": {at2}}, "conf-app", "wrong-secret"); st != 401 {
		t.Fatalf("bad caller %d", st)
	}
	if ev := only(t, rec.take(), audit.ActionTokenIntrospected); ev.Outcome != audit.OutcomeDenied || ev.ClientID != "conf-app" || !slices.Equal(ev.Reasons, []string{"invalid_client"}) || ev.TokenID != "" {
		t.Errorf("refused introspection %+v", ev)
	}

	// Another client's token: answered 200, recorded as denied.
	if st, _, _ := postForm(t, e.issuer+"/auth/revoke", url.Values{"token": {r2["refresh_token"].(string)}}, "conf-app", secret); st != 200 {
		t.Fatalf("foreign revoke %d", st)
	}
	if ev := only(t, rec.take(), audit.ActionTokenRevoked); ev.Outcome != audit.OutcomeDenied || ev.ClientID != "conf-app" || !slices.Equal(ev.Reasons, []string{"unauthorized_client"}) {
		t.Errorf("foreign revoke %+v", ev)
	}
	// Revocation of the access token by its client.
	if st, b, _ := postForm(t, e.issuer+"/auth/revoke", url.Values{"token": {at2}, "client_id": {"public-app"}}, "", ""); st != 200 {
		t.Fatalf("revoke %d %v", st, b)
	}
	ev = only(t, rec.take(), audit.ActionTokenRevoked)
	if ev.Outcome != audit.OutcomeSuccess || ev.ClientID != "public-app" || ev.Subject != "alice" || ev.TokenID != checkAccessToken(t, e, at2).ID ||
		!slices.Equal(ev.Reasons, []string{"access_token"}) {
		t.Errorf("revoked %+v", ev)
	}
	checkRequest(t, ev)
	all = append(all, ev)
	noSecrets(t, all, at2first, rt1, at, rt, at2, r2["refresh_token"].(string), code, verifier, secret)
}

func TestAuditClientCredentials(t *testing.T) {
	e, rec := auditEnv(t)
	es := newES384(t)
	m, sec, err := authserver.MetadataFromConfig(config.Client{ClientID: "bulk-es", TokenEndpointAuthMethod: "private_key_jwt",
		GrantTypes: []string{"client_credentials"}, JWKS: mustAny(es.jwks()), Scope: "system/*.rs"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Clients().Put(context.Background(), m, sec, "admin"); err != nil {
		t.Fatal(err)
	}
	assertion := es.assertion(t, assertionOpts{iss: "bulk-es", aud: e.issuer + "/auth/token", exp: e.clock.Now().Add(4 * time.Minute)})
	st, tok, _ := ccRequest(t, e, assertion, "system/Patient.rs")
	if st != 200 {
		t.Fatalf("%d %v", st, tok)
	}
	ev := only(t, rec.take(), audit.ActionTokenIssued)
	if ev.Outcome != audit.OutcomeSuccess || ev.ClientID != "bulk-es" || ev.Subject != "bulk-es" || ev.TokenID != checkAccessToken(t, e, tok["access_token"].(string)).ID ||
		!slices.Equal(ev.Reasons, []string{"client_credentials"}) || len(ev.Patients) != 0 {
		t.Errorf("client_credentials %+v", ev)
	}
	// A replayed assertion is refused: denied, invalid_client.
	if st, _, _ := ccRequest(t, e, assertion, "system/Patient.rs"); st != 401 {
		t.Fatalf("replay %d", st)
	}
	if ev := only(t, rec.take(), audit.ActionTokenIssued); ev.Outcome != audit.OutcomeDenied || ev.Status != 401 || ev.ClientID != "bulk-es" ||
		!slices.Equal(ev.Reasons, []string{"invalid_client", "client_credentials"}) {
		t.Errorf("replayed assertion %+v", ev)
	}
	noSecrets(t, rec.take(), assertion, tok["access_token"].(string))
}

// When the event of an issued token cannot be recorded, the token is not answered and is
// withdrawn; other events only log the failure.
func TestAuditTokenFailsClosed(t *testing.T) {
	e, rec := auditEnv(t)
	code, verifier, redirect := codeFor(t, e, "launch/patient offline_access patient/Patient.rs")
	rec.fail.Store(true)
	st, body := exchange(t, e, code, verifier, redirect, nil)
	if st != http.StatusServiceUnavailable || body["error"] != "temporarily_unavailable" || body["access_token"] != nil {
		t.Fatalf("unrecorded token answered: %d %v", st, body)
	}
	var refresh, access int
	db := e.db.ReadDB()
	if err := db.QueryRow(`SELECT count(*) FROM oauth_requests WHERE kind = 'refresh' AND active = 1`).Scan(&refresh); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT count(*) FROM oauth_requests WHERE kind = 'access'`).Scan(&access); err != nil {
		t.Fatal(err)
	}
	if refresh != 0 || access != 0 {
		t.Errorf("withdrawn grant still live: %d refresh, %d access", refresh, access)
	}
	// A login still works (the failure is logged).
	if loc, p := e.authorize(e.browser(), e.authParams("public-app", redirect, "launch/patient patient/Patient.rs", "x"+strings.Repeat("A", 42)), flowOpts{user: "alice", pw: alicePW}); loc == nil {
		t.Fatalf("login with the trail down: %d", p.status)
	}
}

func TestAuditRegistrationAndKeyRotation(t *testing.T) {
	e, rec := auditEnv(t, func(c *authserver.Config) {
		c.Auth.Registration.Enabled = true
		c.InitialAccessToken = "initial-token-0123456789"
	})
	body := `{"client_name":"Dyn","redirect_uris":["` + e.appURL + `/dyn"],"token_endpoint_auth_method":"client_secret_basic","grant_types":["authorization_code"],"scope":"openid patient/*.rs launch/patient"}`
	if st, _ := registerClient(t, e, "wrong-token", body); st != 401 {
		t.Fatalf("wrong initial token %d", st)
	}
	if ev := only(t, rec.take(), audit.ActionClientRegistered); ev.Outcome != audit.OutcomeDenied || ev.Status != 401 || !slices.Equal(ev.Reasons, []string{"invalid_token"}) || ev.ClientID != "" {
		t.Errorf("refused registration %+v", ev)
	}
	st, m := registerClient(t, e, "initial-token-0123456789", body)
	if st != 201 {
		t.Fatalf("register %d %v", st, m)
	}
	evs := rec.take()
	ev := only(t, evs, audit.ActionClientRegistered)
	if ev.Outcome != audit.OutcomeSuccess || ev.Status != 201 || ev.ClientID != m["client_id"] || !slices.Equal(ev.Reasons, []string{"client_secret_basic"}) {
		t.Errorf("registered %+v", ev)
	}
	checkRequest(t, ev)
	noSecrets(t, evs, m["client_secret"].(string), "initial-token-0123456789")

	// Key rotation (the admin API calls Rotate; automatic rotation goes through the same hook).
	kid, err := e.keys.Rotate(context.Background(), keys.PurposeAccess)
	if err != nil {
		t.Fatal(err)
	}
	ev = only(t, rec.take(), audit.ActionKeyRotated)
	if ev.Outcome != audit.OutcomeSuccess || !slices.Equal(ev.Reasons, []string{"access"}) || !strings.Contains(ev.Detail, kid) {
		t.Errorf("rotated %+v", ev)
	}
}

// The events land in the real tamper-evident trail on the store, in a chain that verifies.
func TestAuditTrailOnStore(t *testing.T) {
	rec := &lateRecorder{}
	e := newEnv(t, func(c *authserver.Config) { c.Audit = rec })
	trail, err := audit.Open(context.Background(), audit.Options{Store: e.db, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	rec.set(trail)
	e.authorize(e.browser(), e.authParams("public-app", e.appURL+"/callback", "launch/patient patient/Patient.rs", strings.Repeat("A", 43)), flowOpts{user: "alice", pw: "wrong"})
	code, verifier, redirect := codeFor(t, e, "launch/patient offline_access patient/Patient.rs")
	if st, b := exchange(t, e, code, verifier, redirect, nil); st != 200 {
		t.Fatalf("%d %v", st, b)
	}
	if _, err := e.keys.Rotate(context.Background(), keys.PurposeID); err != nil {
		t.Fatal(err)
	}
	if err := trail.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	entries, err := e.db.ListAuditEntries(context.Background(), sqlstore.AuditFilter{Ascending: true, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, en := range entries {
		got = append(got, en.Action+"/"+en.Outcome+"/"+en.Subject)
	}
	want := []string{"login/denied/alice", "login/success/alice", "consent-given/success/alice", "token-issued/success/alice", "key-rotated/success/"}
	if !slices.Equal(got, want) {
		t.Errorf("chain entries %v, want %v", got, want)
	}
	rep, err := audit.Verify(context.Background(), e.db, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Entries != int64(len(want)) {
		t.Errorf("verify: %+v", rep)
	}
}

// lateRecorder forwards to a recorder set after the server was built (the trail needs the
// store the harness opens).
type lateRecorder struct {
	mu sync.Mutex
	r  audit.Recorder
}

func (l *lateRecorder) set(r audit.Recorder) { l.mu.Lock(); l.r = r; l.mu.Unlock() }

func (l *lateRecorder) Record(ctx context.Context, e audit.Event) error {
	l.mu.Lock()
	r := l.r
	l.mu.Unlock()
	if r == nil {
		return nil
	}
	return r.Record(ctx, e)
}

// A user signing in on the grants page and revoking an app's access: login and token-revoked.
func TestAuditGrantsPageRevoke(t *testing.T) {
	e, rec := auditEnv(t)
	code, verifier, redirect := codeFor(t, e, "launch/patient offline_access patient/Patient.rs")
	exchange(t, e, code, verifier, redirect, nil)
	rec.take()
	b := e.browser()
	f := b.get(e.issuer+"/auth/grants").form(t, "/auth/grants/login")
	f.fields.Set("username", "alice")
	f.fields.Set("password", alicePW)
	p := b.post(f.action, f.fields)
	if ev := only(t, rec.take(), audit.ActionLogin); ev.Outcome != audit.OutcomeSuccess || ev.Subject != "alice" || ev.Detail != "connected-apps sign-in" {
		t.Errorf("grants login %+v", ev)
	}
	f = p.form(t, "/auth/grants/revoke")
	if p = b.post(f.action, f.fields); p.status != 200 {
		t.Fatalf("revoke %d", p.status)
	}
	ev := only(t, rec.take(), audit.ActionTokenRevoked)
	if ev.Outcome != audit.OutcomeSuccess || ev.Subject != "alice" || ev.ClientID != "public-app" || !slices.Equal(ev.Patients, []string{"alice"}) ||
		!slices.Equal(ev.Reasons, []string{"user-revoked"}) {
		t.Errorf("user revocation %+v", ev)
	}
}
