package authserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/ory/fosite"

	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// Client authentication at the token, introspection and revocation endpoints (SMART App Launch
// 2.x "client-confidential-symmetric" and "client-confidential-asymmetric", RFC 7523). fosite's
// built-in strategy is replaced because SMART needs rules it lacks: RS384 and ES384 for any
// client, a required kid and exactly one matching key, jku checked against the registered URL,
// exp at most five minutes ahead, and jti replay protection per client.

// Assertion algorithms accepted (SMART: "SHALL support at least one of RS384 or ES384").
var assertionAlgs = []jose.SignatureAlgorithm{jose.RS384, jose.ES384}

const (
	// maxAssertionLife is how far in the future an assertion's exp may be: "no more than five
	// minutes in the future" (SMART client-confidential-asymmetric).
	maxAssertionLife = 5 * time.Minute
	// clockLeeway absorbs clock differences between client and server.
	clockLeeway = 60 * time.Second
)

func invalidClient(hint string) error {
	return fosite.ErrInvalidClient.WithHint(hint)
}

// authenticateClient is the fosite ClientAuthenticationStrategy.
func (s *Server) authenticateClient(ctx context.Context, r *http.Request, form url.Values) (fosite.Client, error) {
	at, assertion := form.Get("client_assertion_type"), form.Get("client_assertion")
	if at != "" || assertion != "" {
		if at != oauth.ClientAssertionJWTBearer {
			return nil, fosite.ErrInvalidRequest.WithHint("Unsupported client_assertion_type.")
		}
		if assertion == "" {
			return nil, fosite.ErrInvalidRequest.WithHint("client_assertion is missing.")
		}
		if _, _, basic := r.BasicAuth(); basic || form.Get("client_secret") != "" {
			return nil, fosite.ErrInvalidRequest.WithHint("Use exactly one client authentication method.")
		}
		return s.authenticateAssertion(ctx, assertion, form.Get("client_id"))
	}
	if id, secret, basic := r.BasicAuth(); basic {
		if form.Get("client_secret") != "" {
			return nil, fosite.ErrInvalidRequest.WithHint("Use exactly one client authentication method.")
		}
		// RFC 6749 2.3.1 form-encodes id and secret before Basic; some clients do not. Accept both.
		c, err := s.lookupClient(ctx, id)
		if err != nil {
			if uid, uerr := url.QueryUnescape(id); uerr == nil && uid != id {
				c, err = s.lookupClient(ctx, uid)
			}
			if err != nil {
				return nil, err
			}
		}
		if cid := form.Get("client_id"); cid != "" && cid != c.GetID() {
			return nil, fosite.ErrInvalidRequest.WithHint("client_id does not match the authenticated client.")
		}
		if c.Metadata.TokenEndpointAuthMethod != oauth.AuthClientSecretBasic {
			return nil, invalidClient("This client does not authenticate with client_secret_basic.")
		}
		ok := c.checkSecret(secret)
		if !ok {
			if us, uerr := url.QueryUnescape(secret); uerr == nil && us != secret {
				ok = c.checkSecret(us)
			}
		}
		if !ok {
			return nil, invalidClient("Client authentication failed.")
		}
		return c, nil
	}
	id := form.Get("client_id")
	if id == "" {
		return nil, invalidClient("Client authentication is missing.")
	}
	c, err := s.lookupClient(ctx, id)
	if err != nil {
		return nil, err
	}
	switch c.Metadata.TokenEndpointAuthMethod {
	case oauth.AuthNone:
		if form.Get("client_secret") != "" {
			return nil, invalidClient("This client is public and has no secret.")
		}
		return c, nil
	case oauth.AuthClientSecretPost:
		if !c.checkSecret(form.Get("client_secret")) {
			return nil, invalidClient("Client authentication failed.")
		}
		return c, nil
	case oauth.AuthTLSClient:
		if form.Get("client_secret") != "" {
			return nil, invalidClient("This client authenticates with its TLS certificate and has no secret.")
		}
		if !certificateMatches(r.TLS, c.Metadata) {
			return nil, invalidClient("Client authentication failed: present the client's TLS certificate.")
		}
		return c, nil
	}
	return nil, invalidClient("This client must authenticate with " + c.Metadata.TokenEndpointAuthMethod + ".")
}

// certificateMatches is RFC 8705 section 2.1 PKI client authentication: the connection's
// certificate chained to a CA the listener trusts (the TLS handshake verified it) and carries the
// registered subject DN or DNS subjectAltName. The DN is compared as Go prints it (RFC 4514).
func certificateMatches(state *tls.ConnectionState, m ClientMetadata) bool {
	if state == nil || len(state.VerifiedChains) == 0 || len(state.PeerCertificates) == 0 {
		return false
	}
	leaf := state.PeerCertificates[0]
	switch {
	case m.TLSClientAuthSubjectDN != "":
		return leaf.Subject.String() == m.TLSClientAuthSubjectDN
	case m.TLSClientAuthSANDNS != "":
		return slices.Contains(leaf.DNSNames, m.TLSClientAuthSANDNS)
	}
	return false
}

func (s *Server) lookupClient(ctx context.Context, id string) (*Client, error) {
	c, err := s.clients.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, invalidClient("Unknown client.")
	}
	if err != nil {
		return nil, fosite.ErrServerError.WithWrap(err)
	}
	return c, nil
}

// assertionClaims are the claims of a client assertion (RFC 7523 3).
type assertionClaims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.Audience     `json:"aud"`
	Expiry    *jwt.NumericDate `json:"exp"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	ID        string           `json:"jti"`
}

func (s *Server) authenticateAssertion(ctx context.Context, raw, formClientID string) (fosite.Client, error) {
	tok, err := jwt.ParseSigned(raw, assertionAlgs)
	if err != nil {
		return nil, invalidClient("The client assertion is not a JWS signed with RS384 or ES384.")
	}
	if len(tok.Headers) != 1 {
		return nil, invalidClient("The client assertion must have one signature.")
	}
	h := tok.Headers[0]
	if h.KeyID == "" {
		return nil, invalidClient("The client assertion header has no kid.")
	}
	if typ, ok := h.ExtraHeaders[jose.HeaderType].(string); ok && typ != "JWT" {
		return nil, invalidClient("The client assertion typ must be JWT.")
	}
	var unverified assertionClaims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return nil, invalidClient("The client assertion claims are malformed.")
	}
	if unverified.Issuer == "" || unverified.Issuer != unverified.Subject {
		return nil, invalidClient("The client assertion iss and sub must both be the client_id.")
	}
	if formClientID != "" && formClientID != unverified.Issuer {
		return nil, invalidClient("client_id does not match the client assertion.")
	}
	c, err := s.lookupClient(ctx, unverified.Issuer)
	if err != nil {
		return nil, err
	}
	if c.Metadata.TokenEndpointAuthMethod != oauth.AuthPrivateKeyJWT {
		return nil, invalidClient("This client does not authenticate with private_key_jwt.")
	}
	var jku string
	if v, ok := h.ExtraHeaders["jku"]; ok {
		jku, _ = v.(string)
		if jku == "" || c.Metadata.JWKSURI == "" || jku != c.Metadata.JWKSURI {
			return nil, invalidClient("The jku header does not match the client's registered JWKS URL.")
		}
	}
	alg := jose.SignatureAlgorithm(h.Algorithm)
	key, err := s.assertionKey(ctx, c, h.KeyID, alg, false)
	if err != nil && c.Metadata.JWKSURI != "" {
		// The client may have rotated: refetch once (rate-limited in the fetcher).
		key, err = s.assertionKey(ctx, c, h.KeyID, alg, true)
	}
	if err != nil {
		s.log.InfoContext(ctx, "client assertion key not found", "client_id", c.GetID(), "kid", h.KeyID, "alg", h.Algorithm, "error", err)
		return nil, invalidClient("No single registered key matches the client assertion's kid and alg.")
	}
	var claims assertionClaims
	if err := tok.Claims(key.Key, &claims); err != nil {
		return nil, invalidClient("The client assertion signature does not verify.")
	}
	now := s.now()
	switch {
	case !claims.Audience.Contains(s.tokenURL):
		return nil, invalidClient("The client assertion aud must be the token endpoint URL.")
	case claims.Expiry == nil:
		return nil, invalidClient("The client assertion has no exp.")
	case !claims.Expiry.Time().After(now):
		return nil, invalidClient("The client assertion expired.")
	case claims.Expiry.Time().After(now.Add(maxAssertionLife + clockLeeway)):
		return nil, invalidClient("The client assertion exp is more than five minutes ahead.")
	case claims.NotBefore != nil && claims.NotBefore.Time().After(now.Add(clockLeeway)):
		return nil, invalidClient("The client assertion is not yet valid.")
	case claims.ID == "" || len(claims.ID) > 256:
		return nil, invalidClient("The client assertion needs a jti.")
	}
	err = s.assertionJTIs().UseAssertionJTI(ctx, c.GetID()+" "+claims.ID, claims.Expiry.Time(), now)
	if errors.Is(err, sqlstore.ErrOAuthExists) {
		return nil, invalidClient("The client assertion jti was used before.")
	}
	if err != nil {
		return nil, fosite.ErrServerError.WithWrap(err)
	}
	return c, nil
}

// assertionKey picks the single registered key with kid whose type fits alg.
func (s *Server) assertionKey(ctx context.Context, c *Client, kid string, alg jose.SignatureAlgorithm, refresh bool) (*jose.JSONWebKey, error) {
	var set *jose.JSONWebKeySet
	if len(c.Metadata.JWKS) > 0 {
		if refresh {
			return nil, errors.New("inline key set")
		}
		set = &jose.JSONWebKeySet{}
		if err := json.Unmarshal(c.Metadata.JWKS, set); err != nil {
			return nil, err
		}
	} else if c.Metadata.JWKSURI != "" {
		var err error
		if set, err = s.jwks.get(ctx, c.Metadata.JWKSURI, refresh, c.source == "dynamic"); err != nil {
			return nil, err
		}
	} else {
		return nil, errors.New("no keys registered")
	}
	var found []jose.JSONWebKey
	for _, k := range set.Keys {
		if k.KeyID != kid || !k.Valid() || !k.IsPublic() {
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != string(alg) {
			continue
		}
		if !keyFitsAlg(k, alg) {
			continue
		}
		found = append(found, k)
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("%d keys match kid %q and alg %s", len(found), kid, alg)
	}
	return &found[0], nil
}

// keyFitsAlg reports whether k's type is the family of alg (RFC 8725 3.1: no algorithm confusion).
func keyFitsAlg(k jose.JSONWebKey, alg jose.SignatureAlgorithm) bool {
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		return alg == jose.RS384 && pub.N.BitLen() >= 2048
	case *ecdsa.PublicKey:
		return alg == jose.ES384 && pub.Curve == elliptic.P384()
	}
	return false
}

// jwksFetcher fetches client JWKS URLs and caches them no longer than the response allows.
type jwksFetcher struct {
	client *http.Client
	log    *slog.Logger
	now    func() time.Time

	mu    sync.Mutex
	cache map[string]jwksEntry
	// guarded is client restricted to public addresses (built on first use).
	guarded *http.Client
}

type jwksEntry struct {
	set     *jose.JSONWebKeySet
	fetched time.Time
	expires time.Time
}

const (
	jwksDefaultTTL   = 5 * time.Minute
	jwksMaxTTL       = time.Hour
	jwksMinRefetch   = 10 * time.Second
	jwksMaxBodySize  = 256 << 10
	jwksFetchTimeout = 10 * time.Second
)

// errJWKSRedirect refuses redirects: the registered JWKS URL is the only place keys come from,
// and a redirect could lead the server to an internal address or plain http.
var errJWKSRedirect = errors.New("fetch jwks: redirects are not followed")

// httpClient returns the client for a fetch: never following redirects, and for publicOnly
// (dynamically registered clients) dialing only public addresses, checked after DNS resolution.
func (f *jwksFetcher) httpClient(publicOnly bool) (*http.Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	base := f.client
	if base == nil {
		base = http.DefaultClient
	}
	if !publicOnly {
		c := *base
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return errJWKSRedirect }
		return &c, nil
	}
	if f.guarded != nil {
		return f.guarded, nil
	}
	var tr *http.Transport
	switch t := base.Transport.(type) {
	case nil:
		tr = http.DefaultTransport.(*http.Transport).Clone()
	case *http.Transport:
		tr = t.Clone()
	default:
		return nil, errors.New("fetch jwks: cannot restrict this HTTP transport to public addresses")
	}
	d := &net.Dialer{Timeout: jwksFetchTimeout, Control: dialPublicOnly}
	tr.DialContext = d.DialContext
	tr.Proxy = nil // a proxy would dial the target itself, past the check
	c := *base
	c.Transport = tr
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return errJWKSRedirect }
	f.guarded = &c
	return f.guarded, nil
}

// dialPublicOnly is a net.Dialer Control refusing connections to non-public addresses.
func dialPublicOnly(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil || !publicIP(ip) {
		return fmt.Errorf("fetch jwks: address %s is not public", host)
	}
	return nil
}

func (f *jwksFetcher) get(ctx context.Context, u string, force, publicOnly bool) (*jose.JSONWebKeySet, error) {
	now := f.now()
	key := u
	if publicOnly {
		key = "public\x00" + u
	}
	f.mu.Lock()
	e, ok := f.cache[key]
	f.mu.Unlock()
	if ok && now.Before(e.expires) && !force {
		return e.set, nil
	}
	if ok && force && now.Sub(e.fetched) < jwksMinRefetch {
		return e.set, nil
	}
	if err := checkFetchURL(u); err != nil {
		return nil, err
	}
	hc, err := f.httpClient(publicOnly)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		f.log.WarnContext(ctx, "client JWKS fetch failed", "url", u, "error", err)
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	f.log.InfoContext(ctx, "fetched client JWKS", "url", u, "status", resp.StatusCode, "duration", time.Since(start))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch jwks: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, jwksMaxBodySize+1))
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	if len(body) > jwksMaxBodySize {
		return nil, errors.New("fetch jwks: response too large")
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	ttl := cacheTTL(resp.Header.Get("Cache-Control"))
	f.mu.Lock()
	if f.cache == nil {
		f.cache = map[string]jwksEntry{}
	}
	f.cache[key] = jwksEntry{set: &set, fetched: now, expires: now.Add(ttl)}
	f.mu.Unlock()
	return &set, nil
}

// cacheTTL reads how long a JWKS response may be reused: no-store/no-cache mean not at all,
// max-age is honoured up to an hour, and the default is five minutes.
func cacheTTL(cc string) time.Duration {
	ttl := jwksDefaultTTL
	for _, d := range strings.Split(cc, ",") {
		d = strings.TrimSpace(strings.ToLower(d))
		switch {
		case d == "no-store" || d == "no-cache":
			return 0
		case strings.HasPrefix(d, "max-age="):
			n, err := strconv.Atoi(strings.TrimPrefix(d, "max-age="))
			if err == nil && n >= 0 {
				ttl = min(time.Duration(n)*time.Second, jwksMaxTTL)
			}
		}
	}
	return ttl
}
