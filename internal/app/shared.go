package app

import (
	"context"
	"fmt"

	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/authserver"
	"github.com/fhirgate/fhirgate/internal/sharedstate"
)

// sharedState is what several instances share through Redis (config: redis, or the rate
// limiter's Redis): revocation notices in front of a per-instance cache, the assertion jti replay
// cache, login throttling, Consent-change notices in front of each FHIR base's Consent cache. Nil
// parts mean one instance on its own (no Redis configured).
type sharedState struct {
	client      *sharedstate.Client
	revocations *sharedstate.Revocations
	jtis        *sharedstate.JTIs
	throttle    *sharedstate.LoginThrottle
	// consents carries "the Consents of this FHIR base changed" between the instances; the
	// scope is consentScope.
	consents *sharedstate.Invalidations
}

// openShared connects the shared state when Redis is configured, registers the revocation hook
// on the store and starts the subscription (stopped by a.stop).
func (a *App) openShared(ctx context.Context) error {
	rc := a.cfg.SharedRedis()
	client, err := sharedstate.Dial(rc, a.lookup, a.log, a.metrics.RedisHook())
	if err != nil {
		return fmt.Errorf("shared state: %w", err)
	}
	a.shared = &sharedState{client: client}
	if client == nil {
		return nil
	}
	if err := client.Ping(ctx); err != nil {
		a.log.Warn("redis does not answer; instances share state through the database until it does", "error", err)
	}
	s := a.shared
	s.revocations = sharedstate.NewRevocations(a.store, client, rc.RevocationCacheTTL)
	s.jtis = sharedstate.NewJTIs(a.store, client)
	s.throttle = sharedstate.NewLoginThrottle(client, a.cfg.Auth.WithDefaults().Login)
	s.consents = sharedstate.NewInvalidations(client, "consents", "consent")
	a.store.OnRevocation(s.revocations.Notify)
	return nil
}

// runShared runs the revocation and Consent subscriptions until ctx is done.
func (a *App) runShared(ctx context.Context) {
	if a.shared == nil || a.shared.revocations == nil {
		return
	}
	a.wg.Add(2)
	go func() {
		defer a.wg.Done()
		a.shared.revocations.Run(ctx)
	}()
	go func() {
		defer a.wg.Done()
		a.shared.consents.Run(ctx)
	}()
}

// sharedConsents is the Consent-change channel between the instances, nil without Redis.
func (a *App) sharedConsents() *sharedstate.Invalidations {
	if a.shared == nil {
		return nil
	}
	return a.shared.consents
}

// consentScope names a FHIR base's Consent cache in the notices: "fhir" for the default base,
// "t/{name}" for a tenant, so that a tenant's Consent writes drop only that tenant's caches.
func consentScope(tenant string) string {
	if tenant == "" {
		return "fhir"
	}
	return "t/" + tenant
}

// revoker is the revocation check of the FHIR side: the cache when shared state is on.
func (a *App) revoker() authn.Revoker {
	if a.shared != nil && a.shared.revocations != nil {
		return a.shared.revocations
	}
	return a.store
}

// withShared sets the authorization server's shared throttle and jti cache, if any.
func (a *App) withShared(cfg authserver.Config) authserver.Config {
	if a.shared != nil && a.shared.client != nil {
		cfg.SharedThrottle = a.shared.throttle
		cfg.AssertionJTIs = a.shared.jtis
	}
	return cfg
}

// sharedReady is the /readyz line of the shared state. Redis being down does not make the
// instance unready: it falls back to the database, correct but slower.
func (a *App) sharedReady(ctx context.Context) string {
	if a.shared == nil || a.shared.client == nil {
		return "shared state: off (single instance)\n"
	}
	if err := a.shared.client.Ping(ctx); err != nil {
		a.log.Warn("shared state degraded: redis", "error", err)
		return "shared state: degraded (redis unavailable; using the database)\n"
	}
	if !a.shared.revocations.Cached() {
		return "shared state: degraded (revocation notices not subscribed yet; using the database)\n"
	}
	if !a.shared.consents.Live() {
		return "shared state: degraded (Consent notices not subscribed yet; Consents read from the FHIR backend)\n"
	}
	return "shared state: ok (redis)\n"
}

func (a *App) closeShared() error {
	if a.shared == nil {
		return nil
	}
	a.store.OnRevocation(nil)
	return a.shared.client.Close()
}
