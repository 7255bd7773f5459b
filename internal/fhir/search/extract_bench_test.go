package search

import "testing"

func BenchmarkExtractObservation(b *testing.B) {
	x := extractor(b)
	body := []byte(observationJSON)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := x.Extract("Observation", body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExtractPatient(b *testing.B) {
	x := extractor(b)
	body := []byte(patientJSON)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := x.Extract("Patient", body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewExtractor(b *testing.B) {
	reg, err := DefaultRegistry()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := NewExtractor(reg); err != nil {
			b.Fatal(err)
		}
	}
}
