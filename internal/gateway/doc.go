// Package gateway owns the HTTP protections in front of every fhirgate route group: the
// middleware chain (request id, panic recovery, real client IP behind trusted proxies, IP rules,
// security headers, CORS, request limits, rate limits), the request cost table, and the server's
// TLS and mutual-TLS configuration.
//
// The composition root builds one Gateway from config.Gateway and wraps each route group's
// handler with Wrap(group, h); the chain's order is written down, once, in Wrap.
package gateway
