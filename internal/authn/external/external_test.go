package external_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/authn/external"
	"github.com/fhirgate/fhirgate/internal/config"
)

// issuer serves discovery (naming discIssuer) and introspection answering answer.
func issuer(t *testing.T, discIssuer func(self string) string, answer map[string]any) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			_ = json.NewEncoder(w).Encode(map[string]any{"issuer": discIssuer(srv.URL), "jwks_uri": srv.URL + "/jwks", "introspection_endpoint": srv.URL + "/introspect",
				"token_endpoint": srv.URL + "/token", "authorization_endpoint": srv.URL + "/authorize"})
		case "/jwks":
			_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{})
		case "/introspect":
			_ = json.NewEncoder(w).Encode(answer)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func self(s string) string { return s }

func TestNewRefuses(t *testing.T) {
	ctx := context.Background()
	good := issuer(t, self, nil)
	liar := issuer(t, func(string) string { return "https://other.example" }, nil)
	for name, cfg := range map[string]external.Config{
		"no audience":           {Issuer: good.URL, Mode: external.ModeJWKS},
		"symmetric algorithm":   {Issuer: good.URL, Audience: "a", Mode: external.ModeJWKS, Algorithms: []jose.SignatureAlgorithm{jose.HS256}},
		"discovery of another":  {Issuer: liar.URL, Audience: "a", Mode: external.ModeJWKS},
		"unknown mode":          {Issuer: good.URL, Audience: "a", Mode: "saml"},
		"introspection no cred": {Issuer: good.URL, Audience: "a", Mode: external.ModeIntrospection},
	} {
		if _, err := external.New(ctx, cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The claim mapping reads dotted paths, arrays or strings, and refuses what cannot be a SMART
// context.
func TestClaimMapping(t *testing.T) {
	exp := float64(time.Now().Add(time.Hour).Unix())
	for _, tc := range []struct {
		name   string
		claims external.Claims
		answer map[string]any
		check  func(*authn.Principal) bool
		ok     bool
	}{
		{"SMART names", external.Claims{}, map[string]any{"active": true, "exp": exp, "sub": "u", "client_id": "c", "scope": "patient/*.rs openid", "patient": "p1", "fhirUser": "Patient/p1", "roles": []any{"patient"}},
			func(p *authn.Principal) bool {
				return p.Patient == "p1" && p.FHIRUser == "Patient/p1" && len(p.Scopes) == 2 && slices.Equal(p.Roles, []string{"patient"}) && p.ClientID == "c"
			}, true},
		{"Keycloak-like", external.Claims{Roles: "realm_access.roles", Scope: "scp", Patient: "ctx.pt"}, map[string]any{"active": true, "exp": exp, "sub": "u", "azp": "kc-app", "scp": []any{"patient/Observation.rs"}, "ctx": map[string]any{"pt": "p2"}, "realm_access": map[string]any{"roles": []any{"clinician"}}},
			func(p *authn.Principal) bool {
				return p.Patient == "p2" && p.ClientID == "kc-app" && len(p.Scopes) == 1 && slices.Equal(p.Roles, []string{"clinician"})
			}, true},
		{"patient that is not an id", external.Claims{}, map[string]any{"active": true, "exp": exp, "sub": "u", "client_id": "c", "patient": "../p"}, nil, false},
		{"fhirUser elsewhere", external.Claims{}, map[string]any{"active": true, "exp": exp, "sub": "u", "client_id": "c", "fhirUser": "https://evil.example/Patient/1"}, nil, false},
		{"no client", external.Claims{}, map[string]any{"active": true, "exp": exp, "sub": "u"}, nil, false},
		{"no expiry", external.Claims{}, map[string]any{"active": true, "sub": "u", "client_id": "c"}, nil, false},
		{"inactive", external.Claims{}, map[string]any{"active": false, "exp": exp, "sub": "u", "client_id": "c"}, nil, false},
		{"another issuer", external.Claims{}, map[string]any{"active": true, "iss": "https://evil.example", "exp": exp, "sub": "u", "client_id": "c"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := issuer(t, self, tc.answer)
			v, err := external.New(context.Background(), external.Config{Issuer: srv.URL, Audience: "http://fhir.example/t/x/fhir", Mode: external.ModeIntrospection,
				ClientID: "fhirgate", ClientSecret: "s", Claims: tc.claims})
			if err != nil {
				t.Fatal(err)
			}
			p, err := v.Authenticate(context.Background(), "Bearer opaque")
			if tc.ok != (err == nil) {
				t.Fatalf("Authenticate = %+v, %v; want ok %v", p, err, tc.ok)
			}
			if tc.ok && !tc.check(p) {
				t.Errorf("principal = %+v", p)
			}
			var ae *authn.Error
			if !tc.ok && (!errors.As(err, &ae) || ae.Status != http.StatusUnauthorized) {
				t.Errorf("error %v is not a 401 authn.Error", err)
			}
		})
	}
	srv := issuer(t, self, nil)
	v, _ := external.New(context.Background(), external.Config{Issuer: srv.URL, Audience: "a", Mode: external.ModeJWKS})
	if _, err := v.Authenticate(context.Background(), "Basic x"); !errors.Is(err, authn.ErrNoToken) {
		t.Errorf("another scheme = %v, want ErrNoToken", err)
	}
	if _, err := v.Authenticate(context.Background(), "Bearer "+strings.Repeat("a", 20000)); err == nil {
		t.Error("an oversized token was accepted")
	}
}

// With the deployment's roles, a token's mapped roles give it their clearance and purposes of
// use; without them, or with no known role, it has neither. The token's own clearance, purpose
// and break-glass claims never count, and no role makes it an emergency-access token.
func TestRoleClearance(t *testing.T) {
	exp := float64(time.Now().Add(time.Hour).Unix())
	roles := config.DefaultRoles()
	// A role carrying BTG cannot be configured (validation refuses it); if one were, external
	// tokens still would not get it.
	roles["btg-role"] = config.Role{Clearance: config.Clearance{Confidentiality: "N"}, PurposeOfUse: []string{"BTG", "ETREAT"}, BreakGlass: true}
	forged := map[string]any{
		"clearance":      map[string]any{"confidentiality": "V", "sensitivity": []any{"*"}},
		"purpose_of_use": []any{"BTG", "TREAT"},
		"break_glass":    map[string]any{"reason": "forged", "review": "r1"},
	}
	for _, tc := range []struct {
		name      string
		roles     map[string]config.Role
		claims    external.Claims
		extra     map[string]any
		clearance *authn.Clearance
		purposes  []string
	}{
		{"option off", nil, external.Claims{}, map[string]any{"roles": []any{"behavioral-health"}}, nil, nil},
		{"known role", roles, external.Claims{}, map[string]any{"roles": []any{"behavioral-health"}},
			&authn.Clearance{Confidentiality: "R", Sensitivity: []string{"BH", "ETH", "MH", "PSY", "SUD"}}, []string{"TREAT"}},
		{"nested claim, space-separated, unknown roles ignored", roles, external.Claims{Roles: "realm_access.roles"},
			map[string]any{"realm_access": map[string]any{"roles": "offline_access clinician uma_authorization"}},
			&authn.Clearance{Confidentiality: "N"}, []string{"TREAT"}},
		{"merged roles", roles, external.Claims{}, map[string]any{"roles": []any{"clinician", "behavioral-health"}},
			&authn.Clearance{Confidentiality: "R", Sensitivity: []string{"BH", "ETH", "MH", "PSY", "SUD"}}, []string{"TREAT"}},
		{"no known role", roles, external.Claims{}, map[string]any{"roles": []any{"admin", "Behavioral-Health"}}, nil, nil},
		{"no roles claim", roles, external.Claims{}, map[string]any{}, nil, nil},
		{"forged claims, option off", nil, external.Claims{}, forged, nil, nil},
		{"forged claims, no known role", roles, external.Claims{}, forged, nil, nil},
		{"forged claims beside a known role", roles, external.Claims{}, with(forged, "roles", []any{"clinician"}), &authn.Clearance{Confidentiality: "N"}, []string{"TREAT"}},
		{"a role that names BTG", roles, external.Claims{}, with(forged, "roles", []any{"btg-role"}), &authn.Clearance{Confidentiality: "N"}, []string{"ETREAT"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answer := map[string]any{"active": true, "exp": exp, "sub": "u", "client_id": "c", "scope": "user/*.rs"}
			for k, v := range tc.extra {
				answer[k] = v
			}
			srv := issuer(t, self, answer)
			v, err := external.New(context.Background(), external.Config{Issuer: srv.URL, Audience: "a", Mode: external.ModeIntrospection,
				ClientID: "fhirgate", ClientSecret: "s", Claims: tc.claims, Roles: tc.roles})
			if err != nil {
				t.Fatal(err)
			}
			for range 2 { // the introspection answer, then the cached principal
				p, err := v.Authenticate(context.Background(), "Bearer opaque")
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(p.Clearance, tc.clearance) {
					t.Errorf("clearance = %+v, want %+v", p.Clearance, tc.clearance)
				}
				if !slices.Equal(p.PurposeOfUse, tc.purposes) {
					t.Errorf("purposes = %v, want %v", p.PurposeOfUse, tc.purposes)
				}
				if p.BreakGlass != nil || p.IsBreakGlass() || p.HasPurpose(authn.PurposeBreakGlass) {
					t.Errorf("an external token is break-glass: %+v", p)
				}
			}
		})
	}
}

func with(m map[string]any, k string, v any) map[string]any {
	out := map[string]any{k: v}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// FuzzAuthenticate: arbitrary bearer values never panic the JWT path and are never accepted
// (the issuer publishes no keys).
func FuzzAuthenticate(f *testing.F) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/jwks" {
			_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": "http://" + r.Host, "jwks_uri": "http://" + r.Host + "/jwks"})
	}))
	defer srv.Close()
	v, err := external.New(context.Background(), external.Config{Issuer: srv.URL, Audience: "a", Mode: external.ModeJWKS, KeyMinRefresh: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("Bearer eyJhbGciOiJFUzI1NiIsImtpZCI6ImsifQ.e30.c2ln")
	f.Add("Bearer eyJhbGciOiJub25lIn0.e30.")
	f.Add("bearer  x")
	f.Fuzz(func(t *testing.T, h string) {
		if p, err := v.Authenticate(context.Background(), h); err == nil {
			t.Fatalf("accepted %q as %+v", h, p)
		}
	})
}
