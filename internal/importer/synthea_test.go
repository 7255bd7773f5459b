package importer_test

import (
	"context"
	"encoding/json"
	"testing"
)

// A Synthea export: hospital and practitioner transaction Bundles with conditional creates, and
// a patient Bundle whose references are urn:uuid fullUrls and conditional references.
func TestImportSynthea(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	for round := 1; round <= 2; round++ {
		im := newImporter(t, s, nil)
		if err := im.ImportPath(ctx, "testdata/synthea"); err != nil {
			t.Fatal(err)
		}
		sum := im.Summary()
		if sum.ErrorCount != 0 || sum.Resources != 7 || sum.Bundles != 3 {
			t.Fatalf("round %d: %d resources, %d bundles, errors %v", round, sum.Resources, sum.Bundles, sum.Errors)
		}
	}
	res, err := s.Read(ctx, "Encounter", "c2a1e0d4-8f6b-4b1d-9a3e-2c1f0a9e0002")
	if err != nil {
		t.Fatal(err)
	}
	var enc struct {
		Subject     struct{ Reference string }
		Participant []struct{ Individual struct{ Reference string } }
		Location    []struct{ Location struct{ Reference string } }
		Provider    struct{ Reference string } `json:"serviceProvider"`
	}
	if err := json.Unmarshal(res.Body, &enc); err != nil {
		t.Fatal(err)
	}
	for got, want := range map[string]string{
		enc.Subject.Reference:                   "Patient/7b2f0c6e-3b1e-4f7a-9d7e-2c1f0a9e0001",
		enc.Participant[0].Individual.Reference: "Practitioner/5c8e1bf0-6c7f-3c3e-9d11-7d1a0f1ac003",
		enc.Location[0].Location.Reference:      "Location/0d9a3a57-1d5e-3f43-8e55-7b0c3f1ab002",
		enc.Provider.Reference:                  "Organization/f4f8d2a4-0c44-3a83-9a39-b0e4e3f1a001",
	} {
		if got != want {
			t.Errorf("reference %q, want %q", got, want)
		}
	}
	// The second round matched the conditional creates instead of creating again, and updated
	// the patient's resources under their own ids.
	org, err := s.Read(ctx, "Organization", "f4f8d2a4-0c44-3a83-9a39-b0e4e3f1a001")
	if err != nil || org.VersionID != 1 {
		t.Errorf("Organization after two imports: %v, %v", org, err)
	}
	pat, err := s.Read(ctx, "Patient", "7b2f0c6e-3b1e-4f7a-9d7e-2c1f0a9e0001")
	if err != nil || pat.VersionID != 2 {
		t.Errorf("Patient after two imports: %v, %v", pat, err)
	}
}
