package multiinstance

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
)

func redisAddrFromEnv() string { return os.Getenv("FHIRGATE_TEST_REDIS") }

func rewriteConfig(t *testing.T, path, old, repl string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(b), old, repl)), 0o600); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
