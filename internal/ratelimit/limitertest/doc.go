// Package limitertest owns the conformance suite every ratelimit.Limiter engine must pass: bucket
// arithmetic, cost, refill, key isolation, argument checks and concurrent spending.
package limitertest
