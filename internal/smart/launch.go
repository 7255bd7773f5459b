package smart

import "encoding/json"

// ContextItem is one entry of the SMART 2.x fhirContext token-response parameter (and access
// token claim): a resource the launch put in context beyond patient and encounter.
type ContextItem struct {
	// Reference is a relative literal reference (Type/id).
	Reference string `json:"reference,omitempty"`
	// Canonical is a canonical URL (Questionnaire, PlanDefinition, ...).
	Canonical string `json:"canonical,omitempty"`
	// Identifier is a FHIR Identifier, kept as JSON.
	Identifier json.RawMessage `json:"identifier,omitempty"`
	// Type is the resource type, when the reference does not say it.
	Type string `json:"type,omitempty"`
	// Role is a URI saying what the item is for (absent means the launch's main item).
	Role string `json:"role,omitempty"`
}

// LaunchContext is what a launch establishes and a token carries along with its scopes.
type LaunchContext struct {
	// Patient is the id of the patient in context (no "Patient/" prefix).
	Patient string `json:"patient,omitempty"`
	// Encounter is the id of the encounter in context.
	Encounter string `json:"encounter,omitempty"`
	// FHIRContext lists further resources in context.
	FHIRContext []ContextItem `json:"fhirContext,omitempty"`
	// NeedPatientBanner and SMARTStyleURL are the EHR-launch display hints.
	NeedPatientBanner *bool  `json:"need_patient_banner,omitempty"`
	SMARTStyleURL     string `json:"smart_style_url,omitempty"`
}
