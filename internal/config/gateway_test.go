package config

import (
	"strings"
	"testing"
	"time"
)

func TestGatewayDefaultsValidate(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if got := c.Gateway.BodyLimit(GroupOAuth); got != 64<<10 {
		t.Errorf("BodyLimit(oauth) = %d, want 65536", got)
	}
	if got := c.Gateway.BodyLimit(GroupFHIR); got != 16<<20 {
		t.Errorf("BodyLimit(fhir) = %d, want the gateway default", got)
	}
}

func TestGatewayValidate(t *testing.T) {
	cases := []struct {
		name string
		edit func(*Gateway)
		key  string
	}{
		{"bad proxy", func(g *Gateway) { g.TrustedProxies = []string{"10.0.0.0/33"} }, "gateway.trusted_proxies"},
		{"bad forwarded header", func(g *Gateway) { g.ForwardedHeader = "x-real-ip" }, "gateway.forwarded_header"},
		{"bad allow", func(g *Gateway) { g.Groups.Admin.Allow = []string{"localhost"} }, "gateway.groups.admin.allow"},
		{"bad deny", func(g *Gateway) { g.Groups.FHIR.Deny = []string{"fe80::1%eth0"} }, "gateway.groups.fhir.deny"},
		{"client cert without mTLS", func(g *Gateway) { g.Groups.Admin.RequireClientCert = true }, "gateway.groups.admin.require_client_cert"},
		{"engine", func(g *Gateway) { g.RateLimit.Engine = "etcd" }, "gateway.rate_limit.engine"},
		{"redis without addr", func(g *Gateway) { g.RateLimit.Engine = "redis" }, "gateway.rate_limit.redis.addr"},
		{"rule group", func(g *Gateway) { g.RateLimit.Rules[0].Groups = []string{"fihr"} }, "gateway.rate_limit.rules[0].groups[0]"},
		{"rule by", func(g *Gateway) { g.RateLimit.Rules[1].By = "token" }, "gateway.rate_limit.rules[1].by"},
		{"rule dup", func(g *Gateway) { g.RateLimit.Rules[1].Name = g.RateLimit.Rules[0].Name }, "gateway.rate_limit.rules[1].name"},
		{"rule name", func(g *Gateway) { g.RateLimit.Rules[0].Name = "a:b" }, "gateway.rate_limit.rules[0].name"},
		{"rule rate", func(g *Gateway) { g.RateLimit.Rules[0].Rate = 0 }, "gateway.rate_limit.rules[0].rate"},
		{"rule period", func(g *Gateway) { g.RateLimit.Rules[0].Period = time.Millisecond }, "gateway.rate_limit.rules[0].period"},
		{"cors origin with path", func(g *Gateway) { g.CORS.ExtraOrigins = []string{"https://app.example/cb"} }, "gateway.cors.extra_origins[0]"},
		{"cors wildcard", func(g *Gateway) { g.CORS.ExtraOrigins = []string{"*"} }, "gateway.cors.extra_origins[0]"},
		{"tls half", func(g *Gateway) { g.TLS.CertFile = "c.pem" }, "gateway.tls.cert_file"},
		{"tls version", func(g *Gateway) { g.TLS.MinVersion = "1.0" }, "gateway.tls.min_version"},
		{"mtls without tls", func(g *Gateway) { g.TLS.ClientAuth = "require" }, "gateway.tls.client_auth"},
		{"mtls without CA", func(g *Gateway) { g.TLS = TLS{CertFile: "c", KeyFile: "k", MinVersion: "1.2", ClientAuth: "optional"} }, "gateway.tls.client_ca_file"},
		{"url length", func(g *Gateway) { g.MaxURLLength = 10 }, "gateway.max_url_length"},
		{"bundle entries", func(g *Gateway) { g.FHIRLimits.MaxBundleEntries = 0 }, "gateway.fhir_limits.max_bundle_entries"},
		{"csp newline", func(g *Gateway) { g.Headers.PageCSP = "a\r\nSet-Cookie: x" }, "gateway.headers.page_csp"},
		{"tracing ratio", func(g *Gateway) { g.Tracing.SampleRatio = 1.5 }, "gateway.tracing.sample_ratio"},
		{"tracing ratio negative", func(g *Gateway) { g.Tracing.SampleRatio = -0.1 }, "gateway.tracing.sample_ratio"},
		{"tracing endpoint scheme", func(g *Gateway) { g.Tracing.Endpoint = "collector:4318" }, "gateway.tracing.endpoint"},
		{"tracing endpoint credentials", func(g *Gateway) { g.Tracing.Endpoint = "https://u:p@collector/v1/traces" }, "gateway.tracing.endpoint"},
		{"tracing service name", func(g *Gateway) { g.Tracing.ServiceName = "" }, "gateway.tracing.service_name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Default()
			c.edit(&cfg.Gateway)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), c.key) {
				t.Errorf("Validate() = %v, want a problem naming %s", err, c.key)
			}
		})
	}
}

func TestIsOrigin(t *testing.T) {
	for s, want := range map[string]bool{
		"https://app.example.org": true, "http://localhost:3000": true, "http://[::1]:8080": true,
		"https://app.example.org/": false, "https://APP.example.org": false, "ftp://x": false,
		"https://": false, "https://u@x": false, "null": false, "*": false, "https://x?y": false,
	} {
		if got := IsOrigin(s); got != want {
			t.Errorf("IsOrigin(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestGatewayEnv(t *testing.T) {
	cfg := Default()
	env := map[string]string{
		"FHIRGATE_GATEWAY_GROUPS_ADMIN_ALLOW":               "10.0.0.0/8, 127.0.0.1",
		"FHIRGATE_GATEWAY_RATE_LIMIT_ENGINE":                "redis",
		"FHIRGATE_GATEWAY_RATE_LIMIT_REDIS_ADDR":            "127.0.0.1:6379",
		"FHIRGATE_GATEWAY_GROUPS_FHIR_RATE_LIMIT_FAIL_OPEN": "false",
	}
	if err := ApplyEnv(&cfg, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	g := cfg.Gateway
	if len(g.Groups.Admin.Allow) != 2 || g.RateLimit.Engine != "redis" || g.Groups.FHIR.RateLimitFailOpen {
		t.Errorf("env not applied: %+v", g)
	}
}

// FuzzParseCIDRList: every entry is either parsed into a masked, zone-free prefix or reported.
func FuzzParseCIDRList(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "::1", "192.0.2.1/24", "fe80::1%eth0/64", "::ffff:1.2.3.4", "1.2.3.4/-1", "", "2001:db8::/129"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		list := strings.Split(s, ",")
		out, errs := ParseCIDRList(list)
		if len(out)+len(errs) != len(list) {
			t.Fatalf("ParseCIDRList(%q): %d prefixes + %d errors for %d entries", list, len(out), len(errs), len(list))
		}
		for _, p := range out {
			if !p.IsValid() || p != p.Masked() || p.Addr().Zone() != "" {
				t.Fatalf("ParseCIDRList(%q) gave %v", list, p)
			}
		}
	})
}

func TestTracingDefaultsOff(t *testing.T) {
	cfg := Default()
	if cfg.Gateway.Tracing.Enabled() || cfg.Gateway.Tracing.ServiceName != "fhirgate" || cfg.Gateway.Tracing.SampleRatio != 1 {
		t.Fatalf("tracing defaults = %+v", cfg.Gateway.Tracing)
	}
	cfg.Gateway.Tracing.Endpoint = "https://collector.example:4318/v1/traces"
	if err := cfg.Validate(); err != nil || !cfg.Gateway.Tracing.Enabled() {
		t.Fatalf("a valid endpoint: %v", err)
	}
}
