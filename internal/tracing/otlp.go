package tracing

import (
	"context"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/fhirgate/fhirgate/internal/config"
)

// init makes OTLP over HTTP the exporter of a configured endpoint.
func init() {
	DefaultExporter = func(ctx context.Context, cfg config.Tracing) (sdktrace.SpanExporter, error) {
		return otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(cfg.Endpoint))
	}
}
