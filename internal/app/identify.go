package app

import (
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/gateway"
)

// identify reads the client, user and patient of a request for the rate limits, cheaply: the
// bearer token's claims are read without checking the signature (the FHIR API checks it later),
// so the identity is reported as unverified and the gateway keys those buckets by the caller's IP
// as well. On the OAuth endpoints the client is the Basic user name.
func identify(r *http.Request) gateway.Identity {
	var id gateway.Identity
	if user, _, ok := r.BasicAuth(); ok {
		id.ClientID = user
		return id
	}
	authz := r.Header.Get("Authorization")
	if len(authz) < 8 || !strings.EqualFold(authz[:7], "bearer ") {
		return id
	}
	tok, err := jwt.ParseSigned(strings.TrimSpace(authz[7:]), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return id
	}
	var c struct {
		ClientID string `json:"client_id"`
		Subject  string `json:"sub"`
		Patient  string `json:"patient"`
	}
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		return id
	}
	id.ClientID, id.Subject, id.Patient = c.ClientID, c.Subject, c.Patient
	return id
}

// allowedOrigins admits browser origins of the registered clients' redirect URIs to the FHIR
// API and the OAuth endpoints. Clients registered later (admin API, dynamic registration) are
// not included until a restart; gateway.cors.extra_origins covers them meanwhile.
func allowedOrigins(clients []config.Client) func(string) bool {
	var once sync.Once
	origins := map[string]bool{}
	return func(origin string) bool {
		once.Do(func() {
			for _, c := range clients {
				for _, ru := range c.RedirectURIs {
					if u, err := url.Parse(ru); err == nil && u.Scheme != "" && u.Host != "" {
						origins[u.Scheme+"://"+u.Host] = true
					}
				}
			}
		})
		return origins[origin]
	}
}
