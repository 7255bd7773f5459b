package bundle_test

import (
	"testing"

	"github.com/fhirgate/fhirgate/internal/bundle"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// parseFunc is the parser the server uses: search.Parse over the default registry, strict.
func parseFunc(t testing.TB) bundle.ParseFunc {
	t.Helper()
	reg, err := search.DefaultRegistry()
	if err != nil {
		t.Fatal(err)
	}
	return bundle.SearchParser(reg, "http://fhir.test/fhir", 1000)
}
