// Command fhirgate is a SMART on FHIR authorization server and secured FHIR R4 API in one binary.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/fhirgate/fhirgate/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case errors.Is(err, config.ErrInvalid), errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "fhirgate:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "fhirgate:", err)
		os.Exit(1)
	}
}
