package fhir

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDecodeHeader(t *testing.T) {
	tests := []struct {
		body    string
		typ, id string
		wantErr string
	}{
		{`{"resourceType":"Patient","id":"a"}`, "Patient", "a", ""},
		{`  {"resourceType":"Observation"}  `, "Observation", "", ""},
		{``, "", "", "JSON object"},
		{`[]`, "", "", "JSON object"},
		{`{"resourceType":"Patient"} {}`, "", "", "more than one"},
		{`{"id":"x"}`, "", "", "resourceType is missing"},
		{`{"resourceType":"Project"}`, "", "", "not a FHIR R4 resource type"},
		{`{"resourceType":5}`, "", "", "not valid JSON"},
	}
	for _, tt := range tests {
		h, err := DecodeHeader([]byte(tt.body))
		if tt.wantErr != "" {
			var fe *Error
			if !errors.As(err, &fe) || fe.Status != 400 || !strings.Contains(fe.Diagnostics, tt.wantErr) {
				t.Errorf("DecodeHeader(%q) err = %v, want 400 mentioning %q", tt.body, err, tt.wantErr)
			}
			continue
		}
		if err != nil || h.ResourceType != tt.typ || h.ID != tt.id {
			t.Errorf("DecodeHeader(%q) = %+v, %v; want %s %s", tt.body, h, err, tt.typ, tt.id)
		}
	}
}

func TestStamp(t *testing.T) {
	at := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("X", 3600))
	out, err := Stamp([]byte(`{"gender":"male","resourceType":"Patient","id":"old","meta":{"versionId":"9","security":[{"code":"R"}]}}`), "new", 3, at)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	meta := m["meta"].(map[string]any)
	if m["id"] != "new" || meta["versionId"] != "3" || meta["lastUpdated"] != "2024-05-06T06:08:09.123Z" {
		t.Errorf("Stamp = %s", out)
	}
	if len(meta["security"].([]any)) != 1 || m["gender"] != "male" {
		t.Errorf("Stamp lost content: %s", out)
	}
	if string(out[:40]) != `{"resourceType":"Patient","id":"new","me` {
		t.Errorf("Stamp does not lead with resourceType and id: %s", out)
	}
	if _, err := Stamp([]byte(`{"resourceType":"Patient","meta":"x"}`), "a", 1, at); err == nil {
		t.Error("Stamp accepted a meta that is not an object")
	}
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{"a": true, "A-1.b": true, "": false, "a_b": false, "a/b": false, string(make([]byte, 65)): false} {
		if got := ValidID(id); got != want {
			t.Errorf("ValidID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestOutcomeFromError(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{ErrGone, 410, "deleted"},
		{ErrNotFound, 404, "not-found"},
		{ErrVersionConflict, 412, "conflict"},
		{ErrMultipleMatches, 412, "multiple-matches"},
		{ErrConflict, 409, "conflict"},
		{Invalid("Patient.gender", "bad"), 400, "invalid"},
		{errors.New("database password is hunter2"), 500, "exception"},
	}
	for _, tt := range tests {
		status, oo := OutcomeFromError(tt.err)
		if status != tt.status || oo.Issue[0].Code != tt.code {
			t.Errorf("OutcomeFromError(%v) = %d %s, want %d %s", tt.err, status, oo.Issue[0].Code, tt.status, tt.code)
		}
		if status == 500 && strings.Contains(oo.Issue[0].Diagnostics, "hunter2") {
			t.Error("an internal error leaked its text to the client")
		}
	}
}

func FuzzDecodeHeader(f *testing.F) {
	for _, s := range []string{`{"resourceType":"Patient","id":"a"}`, `[]`, `{"resourceType":`, `{"resourceType":"Patient","meta":{}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		h, err := DecodeHeader(body)
		if err != nil {
			return
		}
		if !IsResourceType(h.ResourceType) {
			t.Fatalf("accepted resourceType %q", h.ResourceType)
		}
		out, err := Stamp(body, "x", 1, time.Unix(0, 0))
		if err != nil {
			return
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("Stamp produced invalid JSON %q from %q", out, body)
		}
		if m["id"] != "x" {
			t.Fatalf("Stamp lost the id: %s", out)
		}
	})
}
