// Package metrics owns fhirgate's Prometheus metrics: a private registry with the Go and process
// collectors, HTTP request counts and latencies per route group, and the /metrics handler.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is one registry and the collectors fhirgate updates.
type Metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	decisions *prometheus.CounterVec
	tokens    *prometheus.CounterVec
	rejects   *prometheus.CounterVec
	store     *prometheus.HistogramVec
	redis     *prometheus.HistogramVec
}

// New builds a registry with the runtime collectors and the HTTP metrics.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirgate_http_requests_total",
		Help: "HTTP requests by route group, method and status code.",
	}, []string{"group", "method", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "fhirgate_http_request_duration_seconds",
		Help:    "HTTP request latency by route group and method.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"group", "method"})
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirgate_access_decisions_total",
		Help: "FHIR access decisions by interaction, result and first reason.",
	}, []string{"interaction", "result", "reason"})
	m.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirgate_tokens_issued_total",
		Help: "Access tokens issued by grant type.",
	}, []string{"grant"})
	m.rejects = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirgate_rate_limit_rejections_total",
		Help: "Requests refused by the rate limiter, by route group and rule.",
	}, []string{"group", "rule"})
	m.store = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "fhirgate_store_operation_duration_seconds",
		Help:    "Store (database) operation latency by operation and result.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"op", "result"})
	m.redis = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "fhirgate_redis_command_duration_seconds",
		Help:    "Redis round-trip latency (one command or one pipeline) by result.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
	}, []string{"result"})
	m.reg.MustRegister(m.requests, m.duration, m.decisions, m.tokens, m.rejects, m.store, m.redis)
	return m
}

// Decision counts one access decision. interaction and reason come from fixed enumerations, so
// the label set stays bounded.
func (m *Metrics) Decision(interaction string, allowed bool, reason string) {
	result := "deny"
	if allowed {
		result = "allow"
	}
	m.decisions.WithLabelValues(interaction, result, reason).Inc()
}

// Grant types counted by TokenIssued; anything else is counted as "other" so that a client
// cannot grow the label set with invented grant_type values.
var knownGrants = map[string]bool{
	"authorization_code": true,
	"refresh_token":      true,
	"client_credentials": true,
	"urn:ietf:params:oauth:grant-type:token-exchange": true,
	"urn:ietf:params:oauth:grant-type:jwt-bearer":     true,
	"password": true,
}

// TokenIssued counts one access token issued with grant (the grant_type value).
func (m *Metrics) TokenIssued(grant string) {
	if !knownGrants[grant] {
		grant = "other"
	}
	m.tokens.WithLabelValues(grant).Inc()
}

// RateLimitRejected counts one request refused by rule of group. It has the signature of
// gateway.Deps.OnReject. Groups and rule names come from the configuration, so they are bounded.
func (m *Metrics) RateLimitRejected(group, rule string) {
	m.rejects.WithLabelValues(group, rule).Inc()
}

// ObserveStore records the latency of one store operation. op must come from a fixed set chosen
// by the caller (e.g. "fhir.read", "fhir.search", "token.revoked"), never from request data;
// err only selects the result label ("ok" or "error").
func (m *Metrics) ObserveStore(op string, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.store.WithLabelValues(op, result).Observe(d.Seconds())
}

// TimeStore starts timing a store operation; call the returned func with the operation's error:
//
//	done := m.TimeStore("fhir.search")
//	res, err := st.Search(ctx, q)
//	done(err)
func (m *Metrics) TimeStore(op string) func(error) {
	start := time.Now()
	return func(err error) { m.ObserveStore(op, time.Since(start), err) }
}

// Registry lets other components register their collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Instrument counts and times the requests of one route group. Labels are bounded: the group is
// fixed, the method is normalised and the code is the status.
func (m *Metrics) Instrument(group string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		method := r.Method
		switch method {
		case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodHead, http.MethodOptions:
		default:
			method = "OTHER"
		}
		m.requests.WithLabelValues(group, method, strconv.Itoa(rec.status)).Inc()
		m.duration.WithLabelValues(group, method).Observe(time.Since(start).Seconds())
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer (flushing, deadlines).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
