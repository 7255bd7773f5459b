package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/ratelimit"
)

// rule is one compiled rate-limit rule.
type rule struct {
	name     string
	by       string
	limit    ratelimit.Limit
	weighted bool
	policy   string // RateLimit-Policy value
}

// rateLimit is step 8: the request spends its cost (1, or Cost(r) for weighted rules, at most
// the rule's burst) in every rule of the group whose key it has, IP rules first. The first
// refusal answers 429 with Retry-After. Responses carry the RateLimit-Limit, -Remaining, -Reset
// and -Policy fields (the separate-fields form of draft-ietf-httpapi-ratelimit-headers) of the
// rule closest to refusing. When the engine is unreachable the group's
// rate_limit_fail_open decides: admit the request, or answer 503.
func (g *Gateway) rateLimit(gr *group, next http.Handler) http.Handler {
	if g.limiter == nil || len(gr.rules) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := ScopeFrom(r.Context())
		var id Identity
		if gr.needIdent && g.ident != nil {
			id = g.ident(r)
		}
		cost := 0
		var tightest ratelimit.Result
		var tightestPolicy string
		ratio := math.Inf(1)
		for i := range gr.rules {
			ru := &gr.rules[i]
			key, ok := bucketKey(ru, gr.name, s.ClientIP, id)
			if !ok {
				continue
			}
			c := 1
			if ru.weighted {
				if cost == 0 {
					cost = Cost(r)
				}
				c = cost
			}
			res, err := g.limiter.Allow(r.Context(), key, ru.limit, min(c, ru.limit.Burst))
			if err != nil {
				if gr.policy.RateLimitFailOpen && !errors.Is(err, ratelimit.ErrInvalid) {
					continue
				}
				g.log.Debug("rate limiter unavailable: refusing", "group", gr.name, "rule", ru.name, "error", err)
				if g.reject != nil {
					g.reject(gr.name, RejectEngineUnavailable)
				}
				w.Header().Set("Retry-After", "1")
				writeProblem(w, r, gr, problem{status: http.StatusServiceUnavailable, fhirCode: "transient", oauthCode: "temporarily_unavailable",
					msg: "the rate limiter is unavailable; try again shortly"})
				return
			}
			if !res.Allowed {
				if g.reject != nil {
					g.reject(gr.name, ru.name)
				}
				setRateHeaders(w.Header(), res, ru.policy)
				w.Header().Set("Retry-After", strconv.FormatInt(ceilSeconds(res.RetryAfter), 10))
				writeProblem(w, r, gr, problem{status: http.StatusTooManyRequests, fhirCode: "throttled", oauthCode: "temporarily_unavailable",
					msg: "rate limit exceeded (" + ru.name + "); retry after the time in Retry-After"})
				return
			}
			if q := float64(res.Remaining) / float64(res.Limit.Burst); q < ratio {
				ratio, tightest, tightestPolicy = q, res, ru.policy
			}
		}
		if tightestPolicy != "" {
			setRateHeaders(w.Header(), tightest, tightestPolicy)
		}
		next.ServeHTTP(w, r)
	})
}

// RejectEngineUnavailable is the rule name Deps.OnReject receives when a fail-closed group
// refuses because the rate-limit engine cannot answer.
const RejectEngineUnavailable = "engine_unavailable"

func setRateHeaders(h http.Header, res ratelimit.Result, policy string) {
	h["Ratelimit-Limit"] = []string{strconv.Itoa(res.Limit.Burst)}
	h["Ratelimit-Remaining"] = []string{strconv.Itoa(res.Remaining)}
	h["Ratelimit-Reset"] = []string{strconv.FormatInt(ceilSeconds(res.ResetAfter), 10)}
	h["Ratelimit-Policy"] = []string{policy}
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// bucketKey is the key of the request in rule ru, false when the request has no value for the
// rule's dimension (no token: no client, user or patient bucket).
//
// IPv6 clients are keyed by their /64: one host usually holds a whole /64, and keying single
// addresses would hand it 2^64 buckets. Identity values from an unverified token are keyed with
// the client IP (see Identity.Verified).
func bucketKey(ru *rule, groupName string, ip netip.Addr, id Identity) (string, bool) {
	var v string
	switch ru.by {
	case config.RateByIP:
		return ru.name + ":ip:" + ipKey(ip), true
	case config.RateByGroup:
		return ru.name + ":group:" + groupName, true
	case config.RateByClient:
		v = id.ClientID
	case config.RateByUser:
		v = id.Subject
	case config.RateByPatient:
		v = id.Patient
	}
	if v == "" {
		return "", false
	}
	// Subjects and patient ids do not go into Redis or memory in clear: the key holds a digest
	// (a pseudonym: low-entropy ids can still be guessed by whoever reads the keys).
	sum := sha256.Sum256([]byte(v))
	k := ru.name + ":" + ru.by + ":" + hex.EncodeToString(sum[:16])
	if !id.Verified {
		k += "@" + ipKey(ip)
	}
	return k, true
}

func ipKey(ip netip.Addr) string {
	switch {
	case !ip.IsValid():
		return "unknown"
	case ip.Is6():
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}
