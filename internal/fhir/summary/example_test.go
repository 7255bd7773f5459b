package summary_test

import (
	"fmt"

	"github.com/fhirgate/fhirgate/internal/fhir/summary"
)

func ExampleApply() {
	body := []byte(`{"resourceType":"Patient","id":"p1","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Ann</div>"},"name":[{"family":"Lee"}],"photo":[{"url":"http://example.org/p1.png"}]}`)
	out, err := summary.Apply("true", "Patient", body)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(out))
	// Output:
	// {"resourceType":"Patient","id":"p1","meta":{"tag":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED","display":"subsetted"}]},"name":[{"family":"Lee"}]}
}

func ExampleElements() {
	body := []byte(`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"BP"},"subject":{"reference":"Patient/p1"},"note":[{"text":"seated"}]}`)
	out, err := summary.Elements(body, []string{"subject"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(out))
	// Output:
	// {"resourceType":"Observation","id":"o1","meta":{"tag":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED","display":"subsetted"}]},"status":"final","code":{"text":"BP"},"subject":{"reference":"Patient/p1"}}
}
