package fhir_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/fhirgate/fhirgate/internal/fhir"
)

func TestOutcomeUnavailable(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	tests := []struct {
		err  error
		want int
	}{
		{fmt.Errorf("sqlstore: read: %w", dial), 503},
		{fmt.Errorf("sqlstore: read: %w", io.ErrUnexpectedEOF), 503},
		{fmt.Errorf("x: %w", syscall.ECONNRESET), 503},
		{fmt.Errorf("x: %w", fhir.ErrUnavailable), 503},
		{errors.New("syntax error at or near"), 500},
		{fmt.Errorf("x: %w", fhir.ErrConflict), 409},
	}
	for _, tt := range tests {
		if got, oo := fhir.OutcomeFromError(tt.err); got != tt.want {
			t.Errorf("OutcomeFromError(%v) = %d %+v, want %d", tt.err, got, oo, tt.want)
		}
	}
}
