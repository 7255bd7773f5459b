package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/ratelimit"
)

// Identity is who a request claims to act for, read cheaply from its bearer token for rate-limit
// keys. Empty fields are not known.
type Identity struct {
	ClientID string
	Subject  string
	Patient  string
	// Verified reports that the token's signature, issuer, audience and expiry were checked. The
	// claims of an unverified token are attacker-chosen: the gateway then keys client, user and
	// patient buckets by the claim and the client IP together, so a forged token can only spend
	// a bucket that its own IP shares, never the victim's own bucket.
	Verified bool
}

// Deps are the collaborators of a Gateway. Every field is optional.
type Deps struct {
	// Logger receives panics, engine outages and TLS reloads; discarded when nil.
	Logger *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Identify reads the identity of a request for client, user and patient rate limits; those
	// rules are skipped when nil. It must be cheap and must not consume the body.
	Identify func(r *http.Request) Identity
	// AllowedOrigin reports whether a browser origin may call the FHIR API and the OAuth
	// endpoints (the origins of registered clients' redirect URIs); only
	// gateway.cors.extra_origins are admitted when nil.
	AllowedOrigin func(origin string) bool
	// Limiter replaces the engine named by gateway.rate_limit.engine (tests, embedding).
	Limiter ratelimit.Limiter
	// LookupEnv reads the Redis password variable; os.LookupEnv when nil.
	LookupEnv func(string) (string, bool)
	// OnReject is called once for every request a rate-limit rule refuses (429), with the
	// group and the rule's name, e.g. for metrics.Metrics.RateLimitRejected. Also called with
	// rule "engine_unavailable" when a fail-closed group answers 503. Must be cheap.
	OnReject func(group, rule string)
	// RedisHook, when set, is added to the rate limiter's Redis client (latency metrics).
	RedisHook redis.Hook
}

// Gateway holds the compiled protections of every route group.
type Gateway struct {
	cfg     config.Gateway
	log     *slog.Logger
	now     func() time.Time
	ident   func(*http.Request) Identity
	proxies proxyResolver
	limiter ratelimit.Limiter
	engine  string        // memory, redis, custom or off, for ReadyCheck and logs
	redis   *redis.Client // owned, closed by Close
	groups  map[string]*group
	tls     *tls.Config
	reject  func(group, rule string)
}

// group is the compiled policy of one route group.
type group struct {
	name      string
	policy    config.GroupPolicy
	allow     []netip.Prefix
	deny      []netip.Prefix
	bodyLimit int64
	rules     []rule
	needIdent bool
	cors      func(http.Handler) http.Handler
	headers   [][2]string
}

// New compiles cfg, which must have passed config validation. It loads the TLS files and, for
// the redis engine, makes a client (without waiting for Redis to answer: ReadyCheck reports that).
func New(cfg config.Gateway, deps Deps) (*Gateway, error) {
	g := &Gateway{cfg: cfg, log: deps.Logger, now: deps.Now, ident: deps.Identify, reject: deps.OnReject, groups: map[string]*group{}}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.now == nil {
		g.now = time.Now
	}
	if deps.LookupEnv == nil {
		deps.LookupEnv = os.LookupEnv
	}
	var errs []error
	trusted, perr := config.ParseCIDRList(cfg.TrustedProxies)
	errs = append(errs, perr...)
	g.proxies = proxyResolver{trusted: trusted, forwarded: cfg.ForwardedHeader == "forwarded"}

	for _, name := range config.Groups {
		p, _ := cfg.Groups.Get(name)
		gr := &group{name: name, policy: p, bodyLimit: cfg.BodyLimit(name)}
		var e1, e2 []error
		gr.allow, e1 = config.ParseCIDRList(p.Allow)
		gr.deny, e2 = config.ParseCIDRList(p.Deny)
		errs = append(errs, e1...)
		errs = append(errs, e2...)
		gr.headers = securityHeaders(name, cfg.Headers)
		gr.cors = corsFor(name, cfg.CORS, deps.AllowedOrigin)
		g.groups[name] = gr
	}
	if err := g.buildRateLimits(deps); err != nil {
		errs = append(errs, err)
	}
	if cfg.TLS.Enabled() {
		t, err := newServerTLS(cfg.TLS, g.now, g.log)
		if err != nil {
			errs = append(errs, err)
		}
		g.tls = t
	}
	if err := errors.Join(errs...); err != nil {
		g.Close()
		return nil, fmt.Errorf("gateway: %w", err)
	}
	return g, nil
}

func (g *Gateway) buildRateLimits(deps Deps) error {
	rl := g.cfg.RateLimit
	switch {
	case deps.Limiter != nil:
		g.limiter, g.engine = deps.Limiter, "custom"
	case !rl.Enabled:
		g.engine = "off"
		return nil
	case rl.Engine == "memory":
		g.limiter, g.engine = ratelimit.NewMemory(g.now, rl.MaxKeys), "memory"
	case rl.Engine == "redis":
		opts := &redis.Options{
			Addr:         rl.Redis.Addr,
			Username:     rl.Redis.Username,
			DB:           rl.Redis.DB,
			DialTimeout:  max(rl.Redis.Timeout, time.Second),
			ReadTimeout:  rl.Redis.Timeout,
			WriteTimeout: rl.Redis.Timeout,
			PoolTimeout:  rl.Redis.Timeout,
			MaxRetries:   -1, // a retry would double the latency the timeout promises
		}
		if rl.Redis.PasswordEnv != "" {
			pw, ok := deps.LookupEnv(rl.Redis.PasswordEnv)
			if !ok {
				return fmt.Errorf("gateway.rate_limit.redis.password_env: %s is not set", rl.Redis.PasswordEnv)
			}
			opts.Password = pw
		}
		if rl.Redis.TLS {
			host, _, _ := strings.Cut(rl.Redis.Addr, ":")
			opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
		}
		g.redis = redis.NewClient(opts)
		if deps.RedisHook != nil {
			g.redis.AddHook(deps.RedisHook)
		}
		g.limiter = ratelimit.NewRedis(g.redis, ratelimit.RedisOptions{
			Prefix:      rl.Redis.KeyPrefix,
			Timeout:     rl.Redis.Timeout,
			Now:         g.now,
			Logger:      g.log,
			FailureMode: g.failureModes(),
		})
		g.engine = "redis"
	default:
		return fmt.Errorf("gateway.rate_limit.engine: unknown engine %q", rl.Engine)
	}
	for _, r := range rl.Rules {
		burst := r.Burst
		if burst == 0 {
			burst = r.Rate
		}
		compiled := rule{
			name: r.Name, by: r.By, weighted: r.Weighted,
			limit:  ratelimit.Limit{Rate: r.Rate, Period: r.Period, Burst: burst},
			policy: fmt.Sprintf("%d;w=%d", burst, int(r.Period.Seconds())),
		}
		for _, name := range r.Groups {
			gr, ok := g.groups[name]
			if !ok {
				return fmt.Errorf("gateway.rate_limit.rules %q: unknown group %q", r.Name, name)
			}
			gr.rules = append(gr.rules, compiled)
			if r.By == config.RateByClient || r.By == config.RateByUser || r.By == config.RateByPatient {
				gr.needIdent = true
			}
		}
	}
	// Spend the cheapest-to-forge dimensions first: a request refused by its IP bucket then
	// spends nothing from the identity buckets.
	order := map[string]int{config.RateByIP: 0, config.RateByGroup: 1, config.RateByClient: 2, config.RateByUser: 3, config.RateByPatient: 4}
	for _, gr := range g.groups {
		slices.SortStableFunc(gr.rules, func(a, b rule) int { return order[a.by] - order[b.by] })
	}
	return nil
}

// failureModes describes, for logs and /readyz, what each group does when the engine is down.
func (g *Gateway) failureModes() string {
	var open, closed []string
	for _, name := range config.Groups {
		p, _ := g.cfg.Groups.Get(name)
		if p.RateLimitFailOpen {
			open = append(open, name)
		} else {
			closed = append(closed, name)
		}
	}
	return fmt.Sprintf("closed for [%s], open for [%s]", strings.Join(closed, " "), strings.Join(open, " "))
}

// Wrap returns h behind the protections of route group name. It panics on an unknown group,
// a programming error found at start-up.
//
// The chain, outermost first. Each step relies on the ones before it:
//
//  1. request id: the X-Request-ID of a trusted proxy, or a new one; set on the response.
//  2. recover: a panic becomes a logged 500 in the group's error format.
//  3. real client IP: from the TCP peer, or from the forwarding header only when the peer is a
//     trusted proxy; also whether the client connected over HTTPS.
//  4. IP rules: the group's deny then allow CIDRs (403), and the client certificate when the
//     group requires one (403).
//  5. security headers: nosniff, referrer, framing, CSP, cache, HSTS (per group).
//  6. CORS: preflights are answered here, after the IP rules and before any limit.
//  7. request limits: URL length (414), query parameter count (400), body size (413), deadline.
//  8. rate limit: the request's cost is spent in every rule of the group (429, or 503 when the
//     engine is down and the group fails closed).
//  9. the handler.
func (g *Gateway) Wrap(name string, h http.Handler) http.Handler {
	gr, ok := g.groups[name]
	if !ok {
		panic(fmt.Sprintf("gateway: unknown route group %q (want one of %s)", name, strings.Join(config.Groups, ", ")))
	}
	// Built inside out: the last wrapper applied runs first.
	h = g.rateLimit(gr, h)     // 8
	h = g.requestLimits(gr, h) // 7
	h = gr.cors(h)             // 6
	h = g.setHeaders(gr, h)    // 5
	h = g.ipRules(gr, h)       // 4
	h = g.clientIP(h)          // 3
	h = g.recoverPanics(gr, h) // 2
	h = g.requestID(gr, h)     // 1
	return h
}

// ServerTLSConfig is the TLS configuration of the public listener (minimum version, certificate
// with reload on file change, client certificate policy and CAs), or nil when TLS is off.
func (g *Gateway) ServerTLSConfig() *tls.Config {
	if g.tls == nil {
		return nil
	}
	return g.tls.Clone()
}

// ConfigureServer applies the server-side limits: header size, header read timeout and TLS.
func (g *Gateway) ConfigureServer(srv *http.Server) {
	srv.MaxHeaderBytes = g.cfg.MaxHeaderBytes
	srv.ReadHeaderTimeout = g.cfg.ReadHeaderTimeout
	srv.TLSConfig = g.ServerTLSConfig()
}

// ReadyCheck reports whether the rate limiter engine can serve: nil for the memory engine, the
// result of a Redis PING (naming the failure mode of each group) for the redis engine.
func (g *Gateway) ReadyCheck(ctx context.Context) error {
	p, ok := g.limiter.(ratelimit.Pinger)
	if !ok {
		return nil
	}
	if err := p.Ping(ctx); err != nil {
		return fmt.Errorf("rate limiter (%s engine; fail %s): %w", g.engine, g.failureModes(), err)
	}
	return nil
}

// Engine names the rate limiter engine: memory, redis, custom or off.
func (g *Gateway) Engine() string { return g.engine }

// Close releases the Redis client the gateway made, if any.
func (g *Gateway) Close() error {
	if g.redis != nil {
		return g.redis.Close()
	}
	return nil
}
