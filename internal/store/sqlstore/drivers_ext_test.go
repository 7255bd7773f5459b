package sqlstore_test

import (
	"testing"

	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// forEachDriver runs fn as a subtest per driver under test: sqlite always, postgres when
// FHIRGATE_TEST_POSTGRES is set (sqlstore.DriversUnderTest).
func forEachDriver(t *testing.T, fn func(t *testing.T, driver string)) {
	for _, d := range sqlstore.DriversUnderTest() {
		t.Run(d, func(t *testing.T) { fn(t, d) })
	}
}

// openDriver opens a fresh store of driver, closed when the test ends.
func openDriver(t *testing.T, driver string) *sqlstore.Store {
	t.Helper()
	return sqlstore.OpenTestStore(t, driver, sqlstore.Options{})
}
