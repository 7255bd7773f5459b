package config

import (
	"strings"
	"testing"
)

func TestUpstreamAndSecurityValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(c *Config)
		want []string // keys named in the error; none means valid
	}{
		{"defaults", func(*Config) {}, nil},
		{"security off on loopback", func(c *Config) { c.FHIR.Security.Mode = FHIRSecurityOff; c.Addr = "127.0.0.1:9000" }, nil},
		{"security off on every address", func(c *Config) { c.FHIR.Security.Mode = FHIRSecurityOff; c.Addr = "0.0.0.0:8080" }, []string{"fhir.security.mode"}},
		{"security off on every address, accepted", func(c *Config) {
			c.FHIR.Security.Mode = FHIRSecurityOff
			c.Addr = ":8080"
			c.FHIR.Security.AllowNonLoopback = true
		}, nil},
		{"unknown security mode", func(c *Config) { c.FHIR.Security.Mode = "basic" }, []string{"fhir.security.mode"}},
		{"proxy with client_credentials", func(c *Config) {
			c.Upstream.URL = "https://fhir.internal/R4"
			c.Upstream.Auth = UpstreamAuth{Mode: "client_credentials", TokenURL: "https://idp/token", ClientID: "fhirgate", ClientSecretEnv: "S"}
		}, nil},
		{"credentials in the URL", func(c *Config) { c.Upstream.URL = "https://u:p@fhir.internal/R4" }, []string{"upstream.url"}},
		{"not a URL", func(c *Config) { c.Upstream.URL = "fhir.internal" }, []string{"upstream.url"}},
		{"bad limits", func(c *Config) {
			c.Upstream.URL = "http://x/fhir"
			c.Upstream.Timeout = 0
			c.Upstream.MaxResponseBytes = 1
		}, []string{"upstream.timeout", "upstream.max_response_bytes"}},
		{"header without name or value", func(c *Config) { c.Upstream.URL = "http://x/fhir"; c.Upstream.Auth.Mode = "header" }, []string{"upstream.auth.header", "upstream.auth.value_env"}},
		{"client_credentials incomplete", func(c *Config) { c.Upstream.URL = "http://x/fhir"; c.Upstream.Auth.Mode = "client_credentials" },
			[]string{"upstream.auth.token_url", "upstream.auth.client_id", "upstream.auth.client_secret_env"}},
		{"unknown auth mode", func(c *Config) { c.Upstream.URL = "http://x/fhir"; c.Upstream.Auth.Mode = "ntlm" }, []string{"upstream.auth.mode"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mod(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			for _, k := range tc.want {
				if !strings.Contains(err.Error(), k+":") {
					t.Errorf("the error does not name %s: %v", k, err)
				}
			}
		})
	}
}
