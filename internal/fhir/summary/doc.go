// Package summary owns the subsetting of FHIR R4 resources for the _summary and _elements
// parameters: which elements each mode keeps, decided from the summary, mandatory and modifier
// flags of the HL7 R4 StructureDefinitions (generated into summary_gen.go by gen_summary.go), and
// the SUBSETTED tag every subsetted resource carries in meta.tag.
//
// Apply implements _summary=true, text, data and false; Elements implements _elements.
// docs/summary.md describes the rules.
package summary
