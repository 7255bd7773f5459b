package gateway

import (
	"net/http"
	"net/netip"
)

// ipRules is step 4: the group's deny list, then its allow list (empty admits every address),
// then its client-certificate requirement. A request whose client address is unknown passes
// only a group without an allow list.
func (g *Gateway) ipRules(gr *group, next http.Handler) http.Handler {
	if len(gr.allow) == 0 && len(gr.deny) == 0 && !gr.policy.RequireClientCert {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := ScopeFrom(r.Context()).ClientIP
		if !admitted(ip, gr.allow, gr.deny) {
			writeProblem(w, r, gr, problem{status: http.StatusForbidden, fhirCode: "forbidden", oauthCode: "access_denied", msg: "requests from this address are not allowed here"})
			return
		}
		if gr.policy.RequireClientCert && (r.TLS == nil || len(r.TLS.VerifiedChains) == 0) {
			writeProblem(w, r, gr, problem{status: http.StatusForbidden, fhirCode: "forbidden", oauthCode: "access_denied", msg: "a verified TLS client certificate is required"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// admitted applies deny-then-allow to ip.
func admitted(ip netip.Addr, allow, deny []netip.Prefix) bool {
	if ip.IsValid() {
		for _, p := range deny {
			if p.Contains(ip) {
				return false
			}
		}
	}
	if len(allow) == 0 {
		return true
	}
	if !ip.IsValid() {
		return false
	}
	for _, p := range allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
