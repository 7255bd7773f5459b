package authserver

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/config"
)

func FuzzCheckChallenge(f *testing.F) {
	f.Add("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "S256")
	f.Add("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "plain")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, challenge, method string) {
		if checkChallenge(challenge, method) == "" {
			if method != "S256" || len(challenge) != 43 || strings.ContainsAny(challenge, "+/=") {
				t.Fatalf("accepted %q %q", challenge, method)
			}
		}
	})
}

func FuzzCacheTTL(f *testing.F) {
	for _, s := range []string{"", "max-age=60", "no-store", "public, max-age=999999999999", "max-age=-1", "MAX-AGE=5,no-cache"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cc string) {
		d := cacheTTL(cc)
		if d < 0 || d > jwksMaxTTL {
			t.Fatalf("cacheTTL(%q) = %v", cc, d)
		}
	})
}

func FuzzValidateMetadata(f *testing.F) {
	f.Add(`{"client_id":"a","redirect_uris":["https://a/cb"],"token_endpoint_auth_method":"none","grant_types":["authorization_code"],"scope":"patient/*.rs"}`, "")
	f.Add(`{"client_id":"b","token_endpoint_auth_method":"private_key_jwt","grant_types":["client_credentials"],"jwks":{"keys":[{"kty":"EC","crv":"P-384","kid":"k","x":"AA","y":"AA"}]}}`, "")
	f.Add(`{"client_id":"c","token_endpoint_auth_method":"client_secret_basic","grant_types":["client_credentials"]}`, "0123456789abcdef")
	f.Fuzz(func(t *testing.T, raw, secret string) {
		var m ClientMetadata
		if json.Unmarshal([]byte(raw), &m) != nil {
			return
		}
		m = normalizeMetadata(m)
		if ValidateMetadata(m, secret) != nil {
			return
		}
		// Whatever is accepted keeps the invariants the server relies on.
		if m.TokenEndpointAuthMethod == "none" && secret != "" {
			t.Fatal("public client with secret")
		}
		for _, g := range m.GrantTypes {
			if g == "client_credentials" && m.TokenEndpointAuthMethod == "none" {
				t.Fatal("public client_credentials")
			}
			if g == "authorization_code" && len(m.RedirectURIs) == 0 {
				t.Fatal("code grant without redirect")
			}
		}
	})
}

func TestThrottleWindow(t *testing.T) {
	now := time.Unix(0, 0)
	th := newThrottle(config.LoginThrottle{MaxFailuresPerAccount: 2, MaxFailuresPerIP: 3, Window: time.Minute}, func() time.Time { return now })
	th.fail("a", "ip1")
	th.fail("a", "ip1")
	if th.allowed("a", "ip2") {
		t.Fatal("account limit not enforced")
	}
	if !th.allowed("b", "ip1") {
		t.Fatal("ip limit hit early")
	}
	th.fail("b", "ip1")
	if th.allowed("c", "ip1") {
		t.Fatal("ip limit not enforced")
	}
	now = now.Add(time.Minute)
	if !th.allowed("a", "ip1") {
		t.Fatal("window did not end")
	}
}
