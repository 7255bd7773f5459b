package search

import "testing"

func TestNormalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"Smith", "smith"},
		{"  José   María\t\n", "jose maria"},
		{"Núñez", "nunez"},
		{"ZÜRICH", "zurich"},
		{"ﬁle", "file"},
		{"Ærøskøbing", "ærøskøbing"},
		{"Ελένη", "ελενη"},
		{"a\u00a0b", "a b"},
		{"\xff bad", "\ufffd bad"},
	}
	for _, tt := range tests {
		if got := Normalize(tt.in); got != tt.want {
			t.Errorf("Normalize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSplitReference(t *testing.T) {
	tests := []struct{ in, typ, id, url string }{
		{"Patient/123", "Patient", "123", ""},
		{"Patient/123/_history/4", "Patient", "123", ""},
		{"http://example.org/fhir/Patient/123", "Patient", "123", "http://example.org/fhir/Patient/123"},
		{"https://example.org/fhir/Patient/123/_history/2", "Patient", "123", "https://example.org/fhir/Patient/123/_history/2"},
		{"http://example.org/fhir/Nonsense/123", "", "", "http://example.org/fhir/Nonsense/123"},
		{"urn:uuid:3b7a4cc5-5a3e-4b9b-9a76-6b8c0fdbb5ad", "", "", "urn:uuid:3b7a4cc5-5a3e-4b9b-9a76-6b8c0fdbb5ad"},
		{"urn:oid:1.2.3", "", "", "urn:oid:1.2.3"},
		{"#contained", "", "", ""},
		{"", "", "", ""},
		{"Patient", "", "", ""},
		{"Patient/", "", "", ""},
		{"Patient/bad id", "", "", ""},
		{"Nonsense/123", "", "", ""},
		{"x/Patient/123", "", "", ""},
		{"Patient/123/_history", "", "", ""},
		{"Patient?identifier=x|y", "", "", ""},
		{"Patient/123/extra/_history/1", "", "", ""},
		{"http://example.org/fhir/Patient/123?x=1", "Patient", "123", "http://example.org/fhir/Patient/123?x=1"},
	}
	for _, tt := range tests {
		typ, id, url := splitReference(tt.in)
		if typ != tt.typ || id != tt.id || url != tt.url {
			t.Errorf("splitReference(%q) = %q, %q, %q, want %q, %q, %q", tt.in, typ, id, url, tt.typ, tt.id, tt.url)
		}
	}
}

func TestCapString(t *testing.T) {
	long := make([]byte, maxIndexedString+10)
	for i := range long {
		long[i] = 'a'
	}
	long[maxIndexedString-1] = 0xc3 // first byte of é, cut must not split it
	long[maxIndexedString] = 0xa9
	got := capString(string(long))
	if len(got) != maxIndexedString-1 {
		t.Errorf("capString cut at %d, want %d", len(got), maxIndexedString-1)
	}
	if capString("short") != "short" {
		t.Error("capString changed a short string")
	}
	if got := capString("a\x00b\x00"); got != "ab" {
		t.Errorf("capString kept NUL: %q", got)
	}
}
