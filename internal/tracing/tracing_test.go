package tracing

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/fhirgate/fhirgate/internal/config"
)

const parentTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"

func setup(t *testing.T, cfg config.Tracing, opts ...Option) {
	t.Helper()
	shutdown, err := Setup(context.Background(), cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
}

func handler(status int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-ID", "req-1")
		w.WriteHeader(status)
	})
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestSpansPerRequest(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	setup(t, config.Tracing{ServiceName: "fhirgate-test", SampleRatio: 1}, WithSpanProcessor(rec))
	fhir := Middleware("fhir", handler(http.StatusOK))
	oauth := Middleware("oauth", handler(http.StatusTooManyRequests))
	fhir.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/fhir/Patient/secret-patient-id?name=Smith", nil))
	fhir.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("BREW", "/fhir/Patient", nil))
	oauth.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/auth/token", nil))

	spans := rec.Ended()
	if len(spans) != 3 {
		t.Fatalf("%d spans, want 3", len(spans))
	}
	wantNames := []string{"fhir GET", "fhir OTHER", "oauth POST"}
	wantCodes := []int64{200, 200, 429}
	for i, s := range spans {
		if s.Name() != wantNames[i] || s.SpanKind() != trace.SpanKindServer {
			t.Errorf("span %d: %q %v", i, s.Name(), s.SpanKind())
		}
		a := attrs(s)
		if a["http.response.status_code"].AsInt64() != wantCodes[i] || a["fhirgate.request_id"].AsString() != "req-1" {
			t.Errorf("span %d attributes %v", i, a)
		}
		for _, kv := range s.Attributes() {
			if strings.Contains(kv.Value.String(), "secret-patient-id") || strings.Contains(kv.Value.String(), "Smith") {
				t.Errorf("span %d leaks the URL: %v", i, kv)
			}
		}
		if s.Status().Code == codes.Error {
			t.Errorf("span %d marked as error", i)
		}
		if v, ok := s.Resource().Set().Value("service.name"); !ok || v.AsString() != "fhirgate-test" {
			t.Errorf("resource %v", s.Resource())
		}
	}
	if spans[0].SpanContext().TraceID() == spans[2].SpanContext().TraceID() {
		t.Error("independent requests share a trace")
	}
}

func TestTraceparentContinued(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	// Ratio 0: new traces are not recorded, a sampled parent is followed.
	setup(t, config.Tracing{SampleRatio: 0}, WithSpanProcessor(rec))
	var inner []trace.SpanContext
	h := Middleware("fhir", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner = append(inner, trace.SpanContextFromContext(r.Context()))
	}))
	req := httptest.NewRequest("GET", "/fhir/Patient", nil)
	req.Header.Set("traceparent", "00-"+parentTraceID+"-00f067aa0ba902b7-01")
	h.ServeHTTP(httptest.NewRecorder(), req)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/fhir/Patient", nil)) // no parent: dropped
	// A malformed traceparent starts a new (here unsampled) trace rather than failing.
	bad := httptest.NewRequest("GET", "/fhir/Patient", nil)
	bad.Header.Set("traceparent", "00-zz-yy-01")
	h.ServeHTTP(httptest.NewRecorder(), bad)

	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want only the one with a sampled parent", len(spans))
	}
	s := spans[0]
	if s.SpanContext().TraceID().String() != parentTraceID || s.Parent().SpanID().String() != "00f067aa0ba902b7" || !s.Parent().IsRemote() {
		t.Errorf("trace %s parent %s", s.SpanContext().TraceID(), s.Parent().SpanID())
	}
	// The handler sees the server span, so its outgoing calls continue the trace.
	if inner[0].SpanID() != s.SpanContext().SpanID() || !inner[0].IsSampled() {
		t.Error("the handler's context does not hold the server span")
	}
}

func TestServerErrorMarksSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	setup(t, config.Tracing{SampleRatio: 1}, WithSpanProcessor(rec))
	Middleware("fhir", handler(http.StatusServiceUnavailable)).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/fhir", nil))
	if s := rec.Ended(); len(s) != 1 || s[0].Status().Code != codes.Error {
		t.Fatalf("spans %v", s)
	}
}

func TestOffByDefault(t *testing.T) {
	shutdown, err := Setup(context.Background(), config.DefaultGateway().Tracing)
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(context.Background())
	if enabled.Load() {
		t.Fatal("tracing enabled without an endpoint")
	}
	var sc trace.SpanContext
	h := Middleware("fhir", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sc = trace.SpanContextFromContext(r.Context())
	}))
	req := httptest.NewRequest("GET", "/fhir", nil)
	req.Header.Set("traceparent", "00-"+parentTraceID+"-00f067aa0ba902b7-01")
	h.ServeHTTP(httptest.NewRecorder(), req)
	if sc.IsValid() {
		t.Fatal("a trace context was extracted while tracing is off")
	}
}

func TestEndpointNeedsExporter(t *testing.T) {
	cfg := config.Tracing{Endpoint: "https://collector.example/v1/traces", SampleRatio: 1}
	if _, err := Setup(context.Background(), cfg, WithExporterFactory(nil)); !errors.Is(err, ErrNoExporter) {
		t.Fatalf("Setup = %v, want ErrNoExporter", err)
	}
	if enabled.Load() {
		t.Fatal("enabled after a failed Setup")
	}
	boom := errors.New("boom")
	_, err := Setup(context.Background(), cfg, WithExporterFactory(func(context.Context, config.Tracing) (sdktrace.SpanExporter, error) { return nil, boom }))
	if !errors.Is(err, boom) {
		t.Fatalf("Setup = %v", err)
	}
	if _, err := Setup(context.Background(), config.Tracing{SampleRatio: 2}, WithSpanProcessor(tracetest.NewSpanRecorder())); err == nil {
		t.Fatal("ratio 2 accepted")
	}
}

func TestExporterReceivesSpans(t *testing.T) {
	exp := &keepExporter{InMemoryExporter: tracetest.NewInMemoryExporter()}
	var gotEndpoint string
	shutdown, err := Setup(context.Background(), config.Tracing{Endpoint: "https://collector.example/v1/traces", SampleRatio: 1},
		WithExporterFactory(func(_ context.Context, c config.Tracing) (sdktrace.SpanExporter, error) {
			gotEndpoint = c.Endpoint
			return exp, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	Middleware("admin", handler(200)).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/admin", nil))
	if err := shutdown(context.Background()); err != nil { // flushes the batcher
		t.Fatal(err)
	}
	if gotEndpoint != "https://collector.example/v1/traces" || len(exp.GetSpans()) != 1 || exp.GetSpans()[0].Name != "admin GET" {
		t.Fatalf("endpoint %q spans %v", gotEndpoint, exp.GetSpans())
	}
	if enabled.Load() {
		t.Fatal("still enabled after shutdown")
	}
}

// keepExporter keeps its spans on Shutdown (the in-memory exporter resets them).
type keepExporter struct{ *tracetest.InMemoryExporter }

func (keepExporter) Shutdown(context.Context) error { return nil }

func TestLogHandler(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	setup(t, config.Tracing{SampleRatio: 1}, WithSpanProcessor(rec))
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewJSONHandler(&buf, nil))).With("component", "test")
	Middleware("fhir", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.InfoContext(r.Context(), "inside")
	})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/fhir", nil))
	log.InfoContext(context.Background(), "outside")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	tid := rec.Ended()[0].SpanContext().TraceID().String()
	if len(lines) != 2 || !strings.Contains(lines[0], `"trace_id":"`+tid+`"`) || !strings.Contains(lines[0], `"span_id"`) {
		t.Fatalf("inside: %s", lines[0])
	}
	if strings.Contains(lines[1], "trace_id") {
		t.Fatalf("outside a span: %s", lines[1])
	}
}
