package gateway

import (
	"net/http"
	"strconv"

	"github.com/fhirgate/fhirgate/internal/config"
)

// apiCSP forbids an API response from loading or framing anything if a browser renders it.
const apiCSP = "default-src 'none'; frame-ancestors 'none'"

// securityHeaders is the header set of a group (docs/gateway.md has the table):
//
//	every group     X-Content-Type-Options: nosniff, Referrer-Policy: no-referrer,
//	                X-Frame-Options: DENY, Strict-Transport-Security (HTTPS only)
//	fhir, admin     Content-Security-Policy: default-src 'none'; frame-ancestors 'none',
//	                Cache-Control: no-store (PHI)
//	oauth           the same plus Pragma: no-cache (RFC 6749 §5.1)
//	login           Content-Security-Policy: gateway.headers.page_csp, Cache-Control: no-store,
//	                Cross-Origin-Opener-Policy: same-origin
//	discovery       Content-Security-Policy: default-src 'none'; frame-ancestors 'none' (caching is
//	                left to the handler: discovery documents are public)
//
// Handlers may override any of them for a response (a handler knows better what it returns).
func securityHeaders(group string, h config.SecurityHeaders) [][2]string {
	out := [][2]string{
		{"X-Content-Type-Options", "nosniff"},
		{"Referrer-Policy", "no-referrer"},
		{"X-Frame-Options", "DENY"},
	}
	switch group {
	case config.GroupFHIR, config.GroupAdmin:
		out = append(out, [2]string{"Content-Security-Policy", apiCSP}, [2]string{"Cache-Control", "no-store"})
	case config.GroupOAuth:
		out = append(out, [2]string{"Content-Security-Policy", apiCSP}, [2]string{"Cache-Control", "no-store"}, [2]string{"Pragma", "no-cache"})
	case config.GroupLogin:
		out = append(out, [2]string{"Content-Security-Policy", h.PageCSP}, [2]string{"Cache-Control", "no-store"},
			[2]string{"Cross-Origin-Opener-Policy", "same-origin"})
	case config.GroupDiscovery:
		out = append(out, [2]string{"Content-Security-Policy", apiCSP})
	}
	return out
}

func hstsValue(h config.SecurityHeaders) string {
	if h.HSTSMaxAge <= 0 {
		return ""
	}
	v := "max-age=" + strconv.FormatInt(int64(h.HSTSMaxAge.Seconds()), 10)
	if h.HSTSIncludeSubdomains {
		v += "; includeSubDomains"
	}
	return v
}

// setHeaders is step 5. Strict-Transport-Security goes only on responses to clients that came
// over HTTPS (RFC 6797 §7.2: not over plain HTTP).
func (g *Gateway) setHeaders(gr *group, next http.Handler) http.Handler {
	// The value slices are shared by every response: len == cap, so a handler's Header().Add
	// copies instead of writing into them.
	type field struct {
		key string
		val []string
	}
	fields := make([]field, len(gr.headers))
	for i, kv := range gr.headers {
		fields[i] = field{http.CanonicalHeaderKey(kv[0]), []string{kv[1]}[:1:1]}
	}
	var hsts []string
	if v := hstsValue(g.cfg.Headers); v != "" {
		hsts = []string{v}[:1:1]
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for _, f := range fields {
			h[f.key] = f.val
		}
		if hsts != nil && ScopeFrom(r.Context()).Secure {
			h["Strict-Transport-Security"] = hsts
		}
		next.ServeHTTP(w, r)
	})
}
