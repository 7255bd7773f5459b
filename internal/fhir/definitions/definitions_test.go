package definitions

import (
	"encoding/json"
	"slices"
	"testing"
)

// The hand-kept ResourceTypes list must be exactly the R4 part of the schema's discriminator.
func TestResourceTypesMatchSchema(t *testing.T) {
	var schema struct {
		Discriminator struct {
			Mapping map[string]string `json:"mapping"`
		} `json:"discriminator"`
	}
	if err := json.Unmarshal(JSONSchema, &schema); err != nil {
		t.Fatal(err)
	}
	if len(ResourceTypes) != 146 {
		t.Fatalf("len(ResourceTypes) = %d, want 146 (FHIR R4)", len(ResourceTypes))
	}
	if !slices.IsSorted(ResourceTypes) {
		t.Fatal("ResourceTypes is not sorted")
	}
	for _, rt := range ResourceTypes {
		if _, ok := schema.Discriminator.Mapping[rt]; !ok {
			t.Errorf("%s is not in fhir.schema.json", rt)
		}
	}
}
