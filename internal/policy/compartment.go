package policy

import (
	"encoding/json"
	"fmt"

	"github.com/fhirgate/fhirgate/internal/fhir/definitions"
)

// patientCompartment reads the R4 Patient CompartmentDefinition: its types (plus Patient) and
// the parameters of each.
func patientCompartment() (map[string]bool, map[string][]string, error) {
	var def struct {
		Resource []struct {
			Code  string   `json:"code"`
			Param []string `json:"param"`
		} `json:"resource"`
	}
	if err := json.Unmarshal(definitions.PatientCompartment, &def); err != nil {
		return nil, nil, fmt.Errorf("policy: patient compartment definition: %w", err)
	}
	out := map[string]bool{"Patient": true}
	params := map[string][]string{}
	for _, r := range def.Resource {
		if len(r.Param) > 0 {
			out[r.Code] = true
			params[r.Code] = r.Param
		}
	}
	if len(out) < 10 {
		return nil, nil, fmt.Errorf("policy: patient compartment definition lists only %d types", len(out))
	}
	return out, params, nil
}

// DefaultExtraCompartmentTypes are bounded to the patient although the R4 Patient
// CompartmentDefinition does not list them: Device (its patient element; US Core searches
// Device?patient= with patient/ scopes).
var DefaultExtraCompartmentTypes = []string{"Device"}

// DefaultSharedTypes are the resource types outside the Patient compartment that a patient/
// scope may still reach without a compartment bound: directory and reference data that US Core
// must-support references point at (SMART-CONFORMANCE §7.3). Other types outside the compartment
// (Bundle, Binary, definitional resources, ...) are refused to patient/ scopes, because
// nothing bounds them to the patient.
var DefaultSharedTypes = []string{
	"Endpoint", "HealthcareService", "Location", "Medication", "Organization",
	"Practitioner", "PractitionerRole", "Substance",
}
