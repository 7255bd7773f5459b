// Package ratelimit owns fhirgate's rate-limit engines: the Limiter contract (GCRA-style buckets
// of Rate points per Period with a Burst, spent by a cost), an in-memory engine for one instance
// built on golang.org/x/time/rate, and a Redis engine built on github.com/go-redis/redis_rate
// that every instance shares.
//
// Both engines pass the same conformance suite, ratelimit/limitertest. Neither engine decides what
// happens when it fails: the Redis engine returns an error wrapping ErrUnavailable and the caller
// (internal/gateway) applies its fail-open or fail-closed policy.
package ratelimit
