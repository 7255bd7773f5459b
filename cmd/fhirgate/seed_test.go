package main

import (
	"errors"
	"strings"
	"testing"
)

func TestSeed(t *testing.T) {
	dir := t.TempDir()
	out, _, err := runArgs(t, nil, "seed", "--data-dir", dir, "--patients", "3", "--seed", "9", "--date", "2026-01-15")
	if err != nil {
		t.Fatalf("seed = %v", err)
	}
	if !strings.Contains(out, "Patient 3") || !strings.Contains(out, "Practitioner 8") {
		t.Errorf("seed output = %q, want the counts by type", out)
	}
	for _, args := range [][]string{
		{"seed", "--data-dir", dir, "--patients", "0"},
		{"seed", "--data-dir", dir, "--date", "15/01/2026"},
		{"seed", "--data-dir", dir, "extra"},
	} {
		if _, _, err := runArgs(t, nil, args...); !errors.Is(err, errUsage) {
			t.Errorf("%q: err = %v, want a usage error", args, err)
		}
	}
}
