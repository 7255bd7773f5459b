package authserver_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/authserver"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

const (
	residentPW = "resident-password-1"
	bgReason   = "patient unresponsive, allergy history needed"
)

// exchangeEnv is an audited server where clinicians may break the glass, with two clients
// registered for the token exchange (btg-public, btg-conf) besides the default ones (which are
// not), and a "resident" whose role has data scopes but no break-glass.
func exchangeEnv(t *testing.T) (*env, *memRecorder) {
	t.Helper()
	roles := config.DefaultRoles()
	roles["resident"] = config.Role{Clearance: config.Clearance{Confidentiality: "N"}, PurposeOfUse: []string{"TREAT"},
		ScopeCeiling: "launch/patient patient/*.rs user/*.rs"}
	e, rec := auditEnv(t, func(c *authserver.Config) {
		c.Security = &authserver.Security{Roles: roles, BreakGlassTTL: 10 * time.Minute}
	})
	ctx := context.Background()
	scope := "openid fhirUser launch/patient offline_access patient/*.rs user/*.rs"
	for _, c := range []config.Client{
		{ClientID: "btg-public", RedirectURIs: []string{e.appURL + "/callback"}, TokenEndpointAuthMethod: "none",
			GrantTypes: []string{"authorization_code", "refresh_token", oauth.GrantTokenExchange}, Scope: scope},
		{ClientID: "btg-conf", RedirectURIs: []string{e.appURL + "/callback"}, TokenEndpointAuthMethod: "client_secret_basic", ClientSecret: secret,
			GrantTypes: []string{"authorization_code", "refresh_token", oauth.GrantTokenExchange}, Scope: scope},
	} {
		m, sec, err := authserver.MetadataFromConfig(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.srv.Clients().Put(ctx, m, sec, "admin"); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.srv.Users().Put(ctx, authserver.UserSpec{Username: "resident", Password: residentPW, FHIRUser: "Practitioner/res", Roles: []string{"resident"}}, "admin"); err != nil {
		t.Fatal(err)
	}
	return e, rec
}

// grant runs an authorization for client and returns the token response.
func (e *env) grant(t *testing.T, client, user, pw, patient, scope string) map[string]any {
	t.Helper()
	verifier, challenge := pkcePair()
	redirect := e.appURL + "/callback"
	loc, p := e.authorize(e.browser(), e.authParams(client, redirect, scope, challenge), flowOpts{user: user, pw: pw, patient: patient})
	if loc == nil || loc.Query().Get("code") == "" {
		t.Fatalf("no code: %v %d %s", loc, p.status, p.body)
	}
	f := url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {redirect}, "code_verifier": {verifier}}
	basic := ""
	if client == "btg-conf" {
		basic = client
	} else {
		f.Set("client_id", client)
	}
	st, body, _ := postForm(t, e.issuer+"/auth/token", f, basic, secret)
	if st != 200 {
		t.Fatalf("code exchange: %d %v", st, body)
	}
	return body
}

// btgForm is a valid break-glass exchange of subject by client_id (public clients).
func btgForm(subject, clientID string) url.Values {
	return url.Values{
		"grant_type": {oauth.GrantTokenExchange}, "subject_token": {subject}, "subject_token_type": {oauth.TokenTypeAccessToken},
		"purpose_of_use": {"BTG"}, "break_glass_reason": {bgReason}, "client_id": {clientID},
	}
}

// TestBreakGlassTokenExchange: a clinician's app exchanges its access token for a short-lived
// break-glass token of the same user, client and patient, with the review item and the alert
// of break-glass at authorize, and no refresh token.
func TestBreakGlassTokenExchange(t *testing.T) {
	e, rec := exchangeEnv(t)
	ctx := context.Background()
	var issuedTokens []string
	for _, client := range []string{"btg-public", "btg-conf"} {
		t.Run(client, func(t *testing.T) {
			subject := e.grant(t, client, "drsmith", drPW, "bob", "openid fhirUser launch/patient offline_access patient/*.rs user/*.rs")
			rec.take()
			f := btgForm(subject["access_token"].(string), client)
			basic := ""
			if client == "btg-conf" {
				f.Del("client_id")
				basic = client
			}
			before, _ := e.db.ListBreakGlass(ctx, "", 0)
			st, body, h := postForm(t, e.issuer+"/auth/token", f, basic, secret)
			if st != 200 || h.Get("Cache-Control") != "no-store" {
				t.Fatalf("exchange: %d %v", st, body)
			}
			if body["issued_token_type"] != oauth.TokenTypeAccessToken || !strings.EqualFold(body["token_type"].(string), "bearer") ||
				body["expires_in"] != float64(600) || body["patient"] != "bob" || body["refresh_token"] != nil || body["id_token"] != nil {
				t.Errorf("response %v", body)
			}
			// The scope is the subject token's, less offline_access.
			if !sameSet(body["scope"].(string), "openid fhirUser launch/patient patient/*.rs user/*.rs") {
				t.Errorf("scope %q", body["scope"])
			}
			c := checkAccessToken(t, e, body["access_token"].(string))
			if !slices.Equal(c.PurposeOfUse, []string{"BTG"}) || c.BreakGlass == nil || c.BreakGlass.Reason != bgReason ||
				c.Subject != "drsmith" || c.ClientID != client || c.Patient != "bob" || c.FHIRUser != "Practitioner/smith" ||
				c.Expiry-c.IssuedAt != 600 || c.Cnf != nil {
				t.Errorf("claims %+v", c)
			}
			if in := introspect(t, e, body["access_token"].(string)); in["active"] != true {
				t.Errorf("introspection %v", in)
			}
			items, _ := e.db.ListBreakGlass(ctx, sqlstore.BreakGlassOpen, 0)
			if len(items) != len(before)+1 {
				t.Fatalf("review items %+v", items)
			}
			var item sqlstore.BreakGlass
			for _, it := range items {
				if it.ID == c.BreakGlass.Review {
					item = it
				}
			}
			if item.Reason != bgReason || item.Username != "drsmith" || item.FHIRUser != "Practitioner/smith" || item.ClientID != client || item.Patient != "bob" {
				t.Errorf("review item %+v (token names %q)", item, c.BreakGlass.Review)
			}
			evs := rec.take()
			bg := only(t, evs, audit.ActionBreakGlass)
			if !bg.BreakGlass || !slices.Equal(bg.PurposeOfUse, []string{"BTG"}) || bg.ClientID != client || bg.Subject != "drsmith" ||
				!slices.Equal(bg.Patients, []string{"bob"}) || !strings.Contains(bg.Detail, item.ID) || !strings.Contains(bg.Detail, "token exchange") {
				t.Errorf("break-glass event %+v", bg)
			}
			if alerts := (audit.BreakGlass{}).Observe(bg); len(alerts) != 1 {
				t.Errorf("alerts %+v", alerts)
			}
			issued := only(t, evs, audit.ActionTokenIssued)
			if issued.Outcome != audit.OutcomeSuccess || issued.TokenID != c.ID || !slices.Equal(issued.Reasons, []string{oauth.GrantTokenExchange}) {
				t.Errorf("token-issued event %+v", issued)
			}
			noSecrets(t, evs, subject["access_token"].(string), body["access_token"].(string), bgReason)
			// The subject token stays valid; the emergency token ends with its TTL.
			if in := introspect(t, e, subject["access_token"].(string)); in["active"] != true {
				t.Errorf("subject token after the exchange: %v", in)
			}
			issuedTokens = append(issuedTokens, body["access_token"].(string))
		})
	}

	// A narrower scope is honoured.
	subject := e.grant(t, "btg-public", "drsmith", drPW, "bob", "openid fhirUser launch/patient patient/*.rs")
	f := btgForm(subject["access_token"].(string), "btg-public")
	f.Set("scope", "patient/Observation.rs")
	st, body, _ := postForm(t, e.issuer+"/auth/token", f, "", "")
	if st != 200 || body["scope"] != "patient/Observation.rs" || body["patient"] != "bob" {
		t.Fatalf("narrowed: %d %v", st, body)
	}
	// Emergency tokens end with their TTL (10 minutes here).
	e.clock.Advance(11 * time.Minute)
	for _, tok := range append(issuedTokens, body["access_token"].(string)) {
		if in := introspect(t, e, tok); in["active"] != false {
			t.Errorf("break-glass token after its TTL: %v", in)
		}
	}
}

// TestBreakGlassTokenExchangeRefusals: every refused exchange gets its RFC 8693 / RFC 6749 error,
// no token, no review item and no break-glass event.
func TestBreakGlassTokenExchangeRefusals(t *testing.T) {
	e, rec := exchangeEnv(t)
	ctx := context.Background()
	dr := e.grant(t, "btg-public", "drsmith", drPW, "bob", "openid fhirUser launch/patient offline_access patient/*.rs")
	drToken := dr["access_token"].(string)
	confToken := e.grant(t, "btg-conf", "drsmith", drPW, "bob", "openid fhirUser launch/patient patient/*.rs")["access_token"].(string)
	otherPublic := e.grant(t, "public-app", "drsmith", drPW, "bob", "openid fhirUser launch/patient patient/*.rs")["access_token"].(string)
	resident := e.grant(t, "btg-public", "resident", residentPW, "", "openid fhirUser user/*.rs")["access_token"].(string)
	patient := e.grant(t, "btg-public", "alice", alicePW, "", "openid fhirUser launch/patient patient/*.rs")["access_token"].(string)
	revoked := e.grant(t, "btg-public", "drsmith", drPW, "bob", "openid fhirUser launch/patient patient/*.rs")["access_token"].(string)
	if st, _, _ := postForm(t, e.issuer+"/auth/revoke", url.Values{"token": {revoked}, "client_id": {"btg-public"}}, "", ""); st != 200 {
		t.Fatalf("revoke %d", st)
	}
	st, btg, _ := postForm(t, e.issuer+"/auth/token", btgForm(e.grant(t, "btg-public", "drsmith", drPW, "bob", "openid fhirUser launch/patient patient/*.rs")["access_token"].(string), "btg-public"), "", "")
	if st != 200 {
		t.Fatalf("break-glass token: %d %v", st, btg)
	}
	// From here on no review item may be added.
	itemsBefore, _ := e.db.ListBreakGlass(ctx, "", 0)
	rec.take()

	with := func(base url.Values, kv ...string) url.Values {
		f := url.Values{}
		for k, v := range base {
			f[k] = slices.Clone(v)
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				f.Del(kv[i])
			} else {
				f.Set(kv[i], kv[i+1])
			}
		}
		return f
	}
	good := btgForm(drToken, "btg-public")
	cases := []struct {
		name   string
		form   url.Values
		basic  string
		status int
		err    string
		desc   string // part of error_description: refused for this reason, not another
	}{
		{"no reason", with(good, "break_glass_reason", ""), "", 400, "invalid_request", "written reason"},
		{"blank reason", with(good, "break_glass_reason", "   "), "", 400, "invalid_request", "written reason"},
		{"reason too long", with(good, "break_glass_reason", strings.Repeat("x", 1025)), "", 400, "invalid_request", "written reason"},
		{"no purpose", with(good, "purpose_of_use", ""), "", 400, "invalid_request", "purpose_of_use must be BTG"},
		{"purpose not BTG", with(good, "purpose_of_use", "TREAT"), "", 400, "invalid_request", "purpose_of_use must be BTG"},
		{"BTG with another purpose", with(good, "purpose_of_use", "BTG TREAT"), "", 400, "invalid_request", "purpose_of_use must be BTG"},
		{"role without break-glass", btgForm(resident, "btg-public"), "", 400, "invalid_request", "role does not allow"},
		{"patient user", btgForm(patient, "btg-public"), "", 400, "invalid_request", "role does not allow"},
		{"revoked subject token", btgForm(revoked, "btg-public"), "", 400, "invalid_request", "not an active access token"},
		{"subject token of another client", btgForm(confToken, "btg-public"), "", 400, "invalid_request", "another client"},
		{"public client impersonating the confidential one", btgForm(confToken, "btg-conf"), "", 401, "invalid_client", "Client authentication failed"},
		{"token of a client not registered for the grant", btgForm(otherPublic, "public-app"), "", 400, "unauthorized_client", "not registered for the token-exchange"},
		{"break-glass subject token", btgForm(btg["access_token"].(string), "btg-public"), "", 400, "invalid_request", "already an emergency"},
		{"scope widening", with(good, "scope", "patient/*.rs user/*.rs"), "", 400, "invalid_scope", "exceeds"},
		{"scope of another context", with(good, "scope", "user/Observation.rs"), "", 400, "invalid_scope", "exceeds"},
		{"refresh token as subject token", with(good, "subject_token", dr["refresh_token"].(string)), "", 400, "invalid_request", "not an active access token"},
		{"refresh token declared as such", with(good, "subject_token", dr["refresh_token"].(string), "subject_token_type", "urn:ietf:params:oauth:token-type:refresh_token"), "", 400, "invalid_request", "subject_token_type"},
		{"wrong subject_token_type", with(good, "subject_token_type", "urn:ietf:params:oauth:token-type:id_token"), "", 400, "invalid_request", "subject_token_type"},
		{"no subject_token_type", with(good, "subject_token_type", ""), "", 400, "invalid_request", "subject_token_type"},
		{"no subject token", with(good, "subject_token", ""), "", 400, "invalid_request", "subject_token is required"},
		{"garbage subject token", with(good, "subject_token", "not-a-token"), "", 400, "invalid_request", "not an active access token"},
		{"ID token as subject token", with(good, "subject_token", dr["id_token"].(string)), "", 400, "invalid_request", "not an active access token"},
		{"actor token", with(good, "actor_token", drToken, "actor_token_type", oauth.TokenTypeAccessToken), "", 400, "invalid_request", "actor_token"},
		{"other requested token type", with(good, "requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token"), "", 400, "invalid_request", "Only an access token"},
		{"other audience", with(good, "audience", "https://elsewhere.example/fhir"), "", 400, "invalid_target", "FHIR base URL"},
		{"other resource", with(good, "resource", "https://elsewhere.example/fhir"), "", 400, "invalid_target", "FHIR base URL"},
		{"unknown client", with(good, "client_id", "nobody"), "", 401, "invalid_client", "Unknown client"},
		{"repeated reason", func() url.Values { f := with(good); f.Add("break_glass_reason", "second"); return f }(), "", 400, "invalid_request", "is repeated"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, body, _ := postForm(t, e.issuer+"/auth/token", tc.form, tc.basic, secret)
			if d, _ := body["error_description"].(string); st != tc.status || body["error"] != tc.err || !strings.Contains(d, tc.desc) || body["access_token"] != nil {
				t.Fatalf("%d %v, want %d %s (%s)", st, body, tc.status, tc.err, tc.desc)
			}
			evs := rec.take()
			for _, ev := range evs {
				if ev.Action == audit.ActionBreakGlass {
					t.Errorf("break-glass event for a refusal: %+v", ev)
				}
			}
			if ev := only(t, evs, audit.ActionTokenIssued); ev.Outcome != audit.OutcomeDenied || ev.Reasons[0] != tc.err {
				t.Errorf("denial event %+v", ev)
			}
		})
	}
	t.Run("expired subject token", func(t *testing.T) {
		e.clock.Advance(config.DefaultAuth().AccessTokenTTL + time.Minute)
		st, body, _ := postForm(t, e.issuer+"/auth/token", good, "", "")
		if d, _ := body["error_description"].(string); st != 400 || body["error"] != "invalid_request" || !strings.Contains(d, "not an active access token") {
			t.Fatalf("%d %v", st, body)
		}
	})
	if items, _ := e.db.ListBreakGlass(ctx, "", 0); len(items) != len(itemsBefore) {
		t.Errorf("review items after refusals: %d, before %d", len(items), len(itemsBefore))
	}
}

// TestBreakGlassTokenExchangeRoleWithdrawn: the user's role now, not only the one the subject
// token was issued under, must allow break-glass.
func TestBreakGlassTokenExchangeRoleWithdrawn(t *testing.T) {
	e, _ := exchangeEnv(t)
	subject := e.grant(t, "btg-public", "drsmith", drPW, "bob", "openid fhirUser launch/patient patient/*.rs")["access_token"].(string)
	if err := e.srv.Users().Put(context.Background(), authserver.UserSpec{Username: "drsmith", Password: drPW, FHIRUser: "Practitioner/smith", Roles: []string{"resident"}}, "config"); err != nil {
		t.Fatal(err)
	}
	st, body, _ := postForm(t, e.issuer+"/auth/token", btgForm(subject, "btg-public"), "", "")
	if st != 400 || body["error"] != "invalid_request" {
		t.Fatalf("%d %v", st, body)
	}
	if items, _ := e.db.ListBreakGlass(context.Background(), "", 0); len(items) != 0 {
		t.Errorf("review items %+v", items)
	}
}

// TestTokenExchangeDiscoveryAndRegistration: the grant is advertised and accepted only when
// some role allows break-glass, and only an administrator registers a client for it.
func TestTokenExchangeDiscoveryAndRegistration(t *testing.T) {
	off := newEnv(t)
	for _, u := range []string{off.fhirBase + "/.well-known/smart-configuration", off.issuer + "/.well-known/openid-configuration"} {
		if _, doc, _ := getJSON(t, u); slices.Contains(toStrings(doc["grant_types_supported"]), oauth.GrantTokenExchange) {
			t.Errorf("%s advertises token exchange without break-glass roles", u)
		}
	}
	st, body, _ := postForm(t, off.issuer+"/auth/token", btgForm("x", "public-app"), "", "")
	if st != 400 || body["error"] != "unsupported_grant_type" {
		t.Errorf("disabled: %d %v", st, body)
	}
	on, _ := exchangeEnv(t)
	for _, u := range []string{on.fhirBase + "/.well-known/smart-configuration", on.issuer + "/.well-known/openid-configuration"} {
		if _, doc, _ := getJSON(t, u); !slices.Contains(toStrings(doc["grant_types_supported"]), oauth.GrantTokenExchange) {
			t.Errorf("%s does not advertise token exchange", u)
		}
	}
	m := authserver.ClientMetadata{ClientID: "dyn", TokenEndpointAuthMethod: "none", RedirectURIs: []string{"https://app.example/cb"},
		GrantTypes: []string{"authorization_code", oauth.GrantTokenExchange}}
	if err := authserver.ValidateMetadata(m, ""); err != nil {
		t.Errorf("admin registration: %v", err)
	}
	if err := authserver.ValidateDynamicMetadata(m); err == nil {
		t.Error("a dynamically registered client may use the token exchange")
	}
}

// selfSignedClientCert is a client certificate for the TLS test server (which requests but does
// not verify client certificates: the binding is by thumbprint).
func selfSignedClientCert(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestBreakGlassTokenExchangeCertificateBound: a certificate-bound subject token (RFC 8705) is
// exchanged only over a connection presenting its certificate, and the break-glass token is
// bound to the same certificate.
func TestBreakGlassTokenExchangeCertificateBound(t *testing.T) {
	e, _ := exchangeEnv(t)
	ctx := context.Background()
	m, _, err := authserver.MetadataFromConfig(config.Client{ClientID: "btg-bound", RedirectURIs: []string{e.appURL + "/callback"},
		TokenEndpointAuthMethod: "none", CertificateBoundAccessTokens: true,
		GrantTypes: []string{"authorization_code", oauth.GrantTokenExchange}, Scope: "openid fhirUser launch/patient patient/*.rs"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Clients().Put(ctx, m, "", "admin"); err != nil {
		t.Fatal(err)
	}
	// The same server over TLS, asking for client certificates.
	mux := http.NewServeMux()
	e.srv.Register(mux)
	ts := httptest.NewUnstartedServer(mux)
	ts.TLS = &tls.Config{ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	certA, certB := selfSignedClientCert(t, "a"), selfSignedClientCert(t, "b")
	post := func(cert *tls.Certificate, form url.Values) (int, map[string]any) {
		t.Helper()
		c := ts.Client()
		tr := c.Transport.(*http.Transport).Clone()
		tr.TLSClientConfig.Certificates = nil
		if cert != nil {
			tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
		}
		c = &http.Client{Transport: tr, Timeout: 20 * time.Second}
		resp, err := c.PostForm(ts.URL+"/auth/token", form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	thumb := func(c tls.Certificate) string {
		sum := sha256.Sum256(c.Certificate[0])
		return base64.RawURLEncoding.EncodeToString(sum[:])
	}

	verifier, challenge := pkcePair()
	redirect := e.appURL + "/callback"
	loc, p := e.authorize(e.browser(), e.authParams("btg-bound", redirect, "openid fhirUser launch/patient patient/*.rs", challenge),
		flowOpts{user: "drsmith", pw: drPW, patient: "bob"})
	if loc == nil || loc.Query().Get("code") == "" {
		t.Fatalf("no code: %v %d", loc, p.status)
	}
	st, tok := post(&certA, url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {redirect},
		"code_verifier": {verifier}, "client_id": {"btg-bound"}})
	if st != 200 {
		t.Fatalf("code exchange: %d %v", st, tok)
	}
	subject := tok["access_token"].(string)
	if c := checkAccessToken(t, e, subject); c.Cnf == nil || c.Cnf.X5tS256 != thumb(certA) {
		t.Fatalf("subject token not bound to certificate A: %+v", c.Cnf)
	}
	for name, cert := range map[string]*tls.Certificate{"other certificate": &certB, "no certificate": nil} {
		if st, body := post(cert, btgForm(subject, "btg-bound")); st != 400 || body["error"] != "invalid_request" {
			t.Errorf("%s: %d %v", name, st, body)
		}
	}
	if items, _ := e.db.ListBreakGlass(ctx, "", 0); len(items) != 0 {
		t.Fatalf("review items after refusals: %+v", items)
	}
	st, body := post(&certA, btgForm(subject, "btg-bound"))
	if st != 200 {
		t.Fatalf("exchange with certificate A: %d %v", st, body)
	}
	if c := checkAccessToken(t, e, body["access_token"].(string)); c.Cnf == nil || c.Cnf.X5tS256 != thumb(certA) || c.BreakGlass == nil {
		t.Errorf("break-glass token %+v, want bound to certificate A", c)
	}
}
