// Package tracing sets up OpenTelemetry traces: an SDK tracer provider exporting to an OTLP
// collector when gateway.tracing.endpoint is set (off by default), W3C trace-context
// propagation, and an HTTP middleware that records one server span per request, named by route
// group and method.
//
// Spans carry no URL path or query: FHIR paths and search parameters hold patient ids and other
// PHI, and trace backends are rarely protected like the PHI store. That is why the middleware
// is written here on the OTel API rather than taken from otelhttp, which records url.path.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/fhirgate/fhirgate/internal/config"
)

// tracerName is the instrumentation scope of fhirgate's spans.
const tracerName = "github.com/fhirgate/fhirgate"

// ExporterFactory builds the span exporter for cfg.Endpoint.
type ExporterFactory func(ctx context.Context, cfg config.Tracing) (sdktrace.SpanExporter, error)

// DefaultExporter builds the OTLP/HTTP exporter (otlp.go sets it).
var DefaultExporter ExporterFactory

// ErrNoExporter is returned by Setup when tracing is configured but this build has no exporter.
var ErrNoExporter = errors.New("tracing: gateway.tracing.endpoint is set but no exporter is available")

// enabled is true while a tracer provider set up by Setup is installed; the middleware is a
// pass-through otherwise.
var enabled atomic.Bool

type options struct {
	factory    ExporterFactory
	processors []sdktrace.SpanProcessor
}

// Option changes how Setup builds the provider.
type Option func(*options)

// WithExporterFactory replaces DefaultExporter.
func WithExporterFactory(f ExporterFactory) Option { return func(o *options) { o.factory = f } }

// WithSpanProcessor adds a span processor (tests: tracetest.NewSpanRecorder()). With one,
// Setup enables tracing even without an endpoint, exporting only to the given processors.
func WithSpanProcessor(p sdktrace.SpanProcessor) Option {
	return func(o *options) { o.processors = append(o.processors, p) }
}

// Setup installs the global tracer provider and the W3C trace-context propagator when
// cfg.Endpoint is set (or a span processor is given). With tracing off it installs nothing and
// returns a no-op shutdown. shutdown flushes the pending spans and uninstalls the provider.
func Setup(ctx context.Context, cfg config.Tracing, opts ...Option) (shutdown func(context.Context) error, err error) {
	o := options{factory: DefaultExporter}
	for _, f := range opts {
		f(&o)
	}
	noop := func(context.Context) error { return nil }
	if !cfg.Enabled() && len(o.processors) == 0 {
		return noop, nil
	}
	if cfg.SampleRatio < 0 || cfg.SampleRatio > 1 {
		return noop, fmt.Errorf("tracing: sample_ratio %v is outside 0..1", cfg.SampleRatio)
	}
	name := cfg.ServiceName
	if name == "" {
		name = "fhirgate"
	}
	popts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", name))),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
	}
	if cfg.Enabled() {
		if o.factory == nil {
			return noop, ErrNoExporter
		}
		exp, err := o.factory(ctx, cfg)
		if err != nil {
			return noop, fmt.Errorf("tracing: exporter: %w", err)
		}
		popts = append(popts, sdktrace.WithBatcher(exp))
	}
	for _, p := range o.processors {
		popts = append(popts, sdktrace.WithSpanProcessor(p))
	}
	tp := sdktrace.NewTracerProvider(popts...)
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	// Only trace context: baggage is client-chosen data we would forward to every backend.
	otel.SetTextMapPropagator(propagation.TraceContext{})
	enabled.Store(true)
	return func(ctx context.Context) error {
		enabled.Store(false)
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
		return tp.Shutdown(ctx)
	}, nil
}

// Middleware records a server span for every request of a route group, continuing the trace of
// an incoming traceparent header. The span is named "<group> <METHOD>" and carries the group,
// the method, the status code and the X-Request-ID of the response, never the path or query.
// Put it outside gateway.Wrap so refused requests (403, 429, ...) are traced too:
//
//	tracing.Middleware(group, gw.Wrap(group, h))
//
// It passes requests straight through while tracing is off.
func Middleware(group string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !enabled.Load() {
			next.ServeHTTP(w, r)
			return
		}
		ctx := otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		method := normMethod(r.Method)
		ctx, span := otel.Tracer(tracerName).Start(ctx, group+" "+method,
			trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(
				attribute.String("fhirgate.route_group", group),
				attribute.String("http.request.method", method),
			))
		defer span.End()
		rec := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r.WithContext(ctx))
		span.SetAttributes(attribute.Int("http.response.status_code", rec.status))
		if id := w.Header().Get("X-Request-ID"); id != "" {
			span.SetAttributes(attribute.String("fhirgate.request_id", id))
		}
		if rec.status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(rec.status))
		}
	})
}

func normMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// LogHandler wraps a slog.Handler so that records logged with a context inside a recorded span
// carry trace_id and span_id, correlating logs with traces.
func LogHandler(h slog.Handler) slog.Handler { return logHandler{h} }

type logHandler struct{ slog.Handler }

func (l logHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return l.Handler.Handle(ctx, r)
}

func (l logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return logHandler{l.Handler.WithAttrs(as)}
}

func (l logHandler) WithGroup(name string) slog.Handler { return logHandler{l.Handler.WithGroup(name)} }
