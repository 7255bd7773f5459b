package validate_test

import (
	"errors"
	"fmt"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/validate"
)

func ExampleValidator_Validate() {
	v, err := validate.New()
	if err != nil {
		panic(err)
	}
	err = v.Validate("Observation", []byte(`{
		"resourceType": "Observation",
		"code": {"text": "weight"},
		"subject": {"reference": "Medication/m1"},
		"valueQuantity": {"value": 72.5, "unit": "kg"},
		"valueString": "72.5 kg"
	}`))
	var fe *fhir.Error
	if errors.As(err, &fe) {
		fmt.Println(fe.Status)
		for _, is := range fe.Outcome().Issue {
			fmt.Println(is.Code, is.Expression, is.Diagnostics)
		}
	}
	// Output:
	// 422
	// required [Observation.status] Observation.status: a required element is missing
	// value [Observation.subject.reference] Observation.subject.reference: this element may refer to Device, Group, Location, Patient, not to a Medication
	// structure [Observation.value] Observation.value: a choice element value[x] takes one type, but valueQuantity and valueString are present
}
