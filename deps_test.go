package fhirgate_test

import (
	"os/exec"
	"strings"
	"testing"
)

// Domain and protocol packages import no HTTP handlers and no database drivers; no production
// package imports testing.
func TestImportRules(t *testing.T) {
	if testing.Short() {
		t.Skip("go list is slow; skipped with -short")
	}
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}|{{join .Imports " "}}|{{join .Deps " "}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/fhirgate/fhirgate/"
	pure := []string{"internal/fhir", "internal/fhir/search", "internal/fhir/compartment", "internal/fhir/definitions", "internal/smart", "internal/oauth", "internal/policy"}
	drivers := []string{"modernc.org/sqlite", "github.com/jackc/pgx", "github.com/redis/go-redis", "database/sql"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		parts := strings.SplitN(line, "|", 3)
		rel := strings.TrimPrefix(parts[0], mod)
		imports, deps := strings.Fields(parts[1]), strings.Fields(parts[2])
		for _, imp := range imports {
			if imp == "testing" && !strings.HasSuffix(rel, "test") {
				t.Errorf("%s imports testing", rel)
			}
		}
		for _, p := range pure {
			if rel != p {
				continue
			}
			for _, dep := range deps {
				for _, d := range drivers {
					if strings.HasPrefix(dep, d) {
						t.Errorf("%s must not depend on %s", rel, dep)
					}
				}
				if dep == "net/http/httptest" {
					t.Errorf("%s must not depend on %s", rel, dep)
				}
			}
		}
	}
}
