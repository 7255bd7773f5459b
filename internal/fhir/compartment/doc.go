// Package compartment owns the FHIR compartment definitions and compartment membership: which
// compartment instances (Patient/123) hold a resource, computed from the resource's search index
// entries as the R4 CompartmentDefinition names them.
//
// Only the Patient CompartmentDefinition is loaded (the one SMART patient-context access needs);
// Parse accepts the Encounter, RelatedPerson, Practitioner and Device definitions unchanged when
// they are added to internal/fhir/definitions, and Set keys definitions by compartment type.
package compartment
