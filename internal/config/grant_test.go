package config

import (
	"strings"
	"testing"
)

// The break-glass token exchange (RFC 8693) is a grant type a configured client may name; an
// unknown one is still refused.
func TestClientGrantTypes(t *testing.T) {
	for _, tc := range []struct {
		grant string
		ok    bool
	}{
		{"urn:ietf:params:oauth:grant-type:token-exchange", true},
		{"authorization_code", true},
		{"urn:ietf:params:oauth:grant-type:jwt-bearer", false},
		{"password", false},
	} {
		cfg := Default()
		cfg.Clients = []Client{{ClientID: "c", RedirectURIs: []string{"https://app.example/cb"}, GrantTypes: []string{"authorization_code", tc.grant}}}
		err := cfg.Validate()
		if (err == nil) != tc.ok || err != nil && !strings.Contains(err.Error(), "clients[0].grant_types[1]") {
			t.Errorf("grant %q: Validate() = %v", tc.grant, err)
		}
	}
}
