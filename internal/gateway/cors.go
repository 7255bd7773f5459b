package gateway

import (
	"net/http"
	"slices"

	"github.com/rs/cors"

	"github.com/fhirgate/fhirgate/internal/config"
)

// Headers a browser app may read from cross-origin responses.
var exposed = []string{
	"Content-Location", "ETag", "Last-Modified", "Location", "Retry-After",
	"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy", "X-Request-Id",
}

// corsFor is step 6 for a group:
//
//	discovery   any origin, GET and HEAD: discovery documents and /fhir/metadata are public.
//	fhir        the origins of registered clients (allowed) and extra_origins; the FHIR methods and
//	            headers; no credentials (SMART apps send a bearer token, not cookies).
//	oauth       the same origins, GET and POST (token, revoke, introspect, register, userinfo).
//	login,      no CORS: the pages are same-origin forms and the admin API is not for browsers;
//	admin       a preflight gets no Access-Control-* header, so the browser refuses.
//
// The "null" origin (sandboxed frames, file: pages) is never admitted on fhir and oauth.
// Preflights are answered here with 204 and never reach the handler or the rate limiter.
func corsFor(group string, c config.CORS, allowed func(string) bool) func(http.Handler) http.Handler {
	maxAge := int(c.MaxAge.Seconds())
	if maxAge == 0 {
		maxAge = -1
	}
	origin := func(o string) bool {
		if o == "null" || o == "" {
			return false
		}
		if slices.Contains(c.ExtraOrigins, o) {
			return true
		}
		return allowed != nil && allowed(o)
	}
	switch group {
	case config.GroupDiscovery:
		return cors.New(cors.Options{
			AllowedOrigins: []string{"*"},
			AllowedMethods: []string{http.MethodGet, http.MethodHead},
			AllowedHeaders: []string{"Accept", "Authorization", "X-Request-Id"},
			ExposedHeaders: exposed,
			MaxAge:         maxAge,
		}).Handler
	case config.GroupFHIR:
		return cors.New(cors.Options{
			AllowOriginFunc: origin,
			AllowedMethods:  []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete},
			AllowedHeaders: []string{"Accept", "Authorization", "Content-Type", "If-Match", "If-None-Match",
				"If-None-Exist", "If-Modified-Since", "Prefer", "X-Request-Id"},
			ExposedHeaders: exposed,
			MaxAge:         maxAge,
		}).Handler
	case config.GroupOAuth:
		return cors.New(cors.Options{
			AllowOriginFunc: origin,
			AllowedMethods:  []string{http.MethodGet, http.MethodPost},
			AllowedHeaders:  []string{"Accept", "Authorization", "Content-Type", "X-Request-Id"},
			ExposedHeaders:  exposed,
			MaxAge:          maxAge,
		}).Handler
	default:
		return func(h http.Handler) http.Handler { return h }
	}
}
