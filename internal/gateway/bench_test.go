package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/gateway"
)

// bare is the handler the chain's overhead is measured against.
var bare = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })

// highQuota keeps the benchmarks under the limits while still spending in every rule.
func highQuota(c *config.Gateway) {
	for i := range c.RateLimit.Rules {
		c.RateLimit.Rules[i].Rate = 1 << 30
		c.RateLimit.Rules[i].Period = time.Second
	}
}

func benchServe(b *testing.B, h http.Handler, target string, header map[string]string) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest.NewRequest("GET", target, nil)
		r.RemoteAddr = "192.0.2.1:1234"
		r.Header.Set("Origin", "https://app.example.org")
		for k, v := range header {
			r.Header.Set(k, v)
		}
		for pb.Next() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != 200 {
				b.Errorf("status %d", w.Code)
				return
			}
		}
	})
}

// BenchmarkChain compares a bare handler with the same handler behind each group's chain
// (memory engine, every default rule spending). Report the ratio of ns/op to Bare.
func BenchmarkChain(b *testing.B) {
	allowed := func(o string) bool { return o == "https://app.example.org" }
	g := newGateway(b, highQuota, gateway.Deps{Identify: tokenIdentity, AllowedOrigin: allowed})
	id := map[string]string{"X-Test-Identity": "app,alice,Patient/1,verified"}
	search := "/fhir/Observation?patient=1&code=http://loinc.org|1234-5&_include=Observation:subject&_count=50"
	b.Run("Bare", func(b *testing.B) { benchServe(b, bare, search, id) })
	b.Run("FHIRSearch", func(b *testing.B) { benchServe(b, g.Wrap(config.GroupFHIR, bare), search, id) })
	b.Run("FHIRRead", func(b *testing.B) { benchServe(b, g.Wrap(config.GroupFHIR, bare), "/fhir/Patient/1", id) })
	b.Run("Discovery", func(b *testing.B) { benchServe(b, g.Wrap(config.GroupDiscovery, bare), "/fhir/metadata", nil) })
	if addr := os.Getenv("FHIRGATE_TEST_REDIS"); addr != "" {
		cleanRedis(b, addr, "fhirgate-test:bench:")
		gr := newGateway(b, func(c *config.Gateway) {
			highQuota(c)
			c.RateLimit.Engine = "redis"
			c.RateLimit.Redis.Addr = addr
			c.RateLimit.Redis.KeyPrefix = "fhirgate-test:bench:"
		}, gateway.Deps{Identify: tokenIdentity, AllowedOrigin: allowed})
		b.Run("FHIRSearchRedis", func(b *testing.B) { benchServe(b, gr.Wrap(config.GroupFHIR, bare), search, id) })
	}
}
