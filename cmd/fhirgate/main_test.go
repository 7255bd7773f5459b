package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/config"
)

func runArgs(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := runWithEnv(context.Background(), args, &out, &errOut, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	return out.String(), errOut.String(), err
}

func TestCommands(t *testing.T) {
	out, _, err := runArgs(t, nil, "version")
	if err != nil || !strings.HasPrefix(out, "fhirgate ") {
		t.Errorf("version = %q, %v", out, err)
	}
	out, _, err = runArgs(t, nil, "help")
	if err != nil || !strings.Contains(out, "serve") {
		t.Errorf("help = %q, %v", out, err)
	}
	if _, _, err := runArgs(t, nil); !errors.Is(err, errUsage) {
		t.Errorf("no subcommand: err = %v, want usage", err)
	}
	if _, _, err := runArgs(t, nil, "frobnicate"); !errors.Is(err, errUsage) {
		t.Errorf("unknown subcommand: err = %v, want usage", err)
	}
}

func TestServeRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "fhirgate.yaml")
	if err := os.WriteFile(file, []byte("base_url: not-a-url\nlog: {level: loud}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := runArgs(t, nil, "serve", "--config", file, "--data-dir", dir)
	if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "base_url") || !strings.Contains(err.Error(), "log.level") {
		t.Errorf("serve with a bad config: err = %v, want one naming base_url and log.level", err)
	}
	_, _, err = runArgs(t, map[string]string{"FHIRGATE_STORAGE_DRIVER": "oracle"}, "serve", "--data-dir", dir)
	if err == nil || !strings.Contains(err.Error(), "storage.driver") {
		t.Errorf("serve with a bad env value: err = %v, want one naming storage.driver", err)
	}
	_, _, err = runArgs(t, nil, "serve", "--data-dir", dir, "--addr", "nope")
	if err == nil || !strings.Contains(err.Error(), "addr") {
		t.Errorf("serve with a bad flag value: err = %v, want one naming addr", err)
	}
}
