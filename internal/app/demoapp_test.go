package app_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/internal/config"
)

// The demo SMART app is served at /demo/app/ with --demo only, under its own CSP, and the home
// page points to it.
func TestDemoAppMountedOnlyInDemoMode(t *testing.T) {
	for _, demo := range []bool{true, false} {
		t.Run(map[bool]string{true: "demo", false: "no demo"}[demo], func(t *testing.T) {
			srv := httptest.NewUnstartedServer(nil)
			base := "http://" + srv.Listener.Addr().String()
			cfg := config.Default()
			cfg.BaseURL, cfg.DataDir, cfg.Demo, cfg.AdminAddr = base, t.TempDir(), demo, ""
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			a, err := app.New(context.Background(), cfg, app.Options{Lookup: func(string) (string, bool) { return "", false }})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			srv.Config.Handler = a.Handler()
			srv.Start()
			defer srv.Close()
			get := func(path string) (*http.Response, string) {
				resp, err := http.Get(base + path)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp, string(b)
			}
			want := http.StatusNotFound
			if demo {
				want = http.StatusOK
			}
			for _, p := range []string{"/demo/app/", "/demo/app/launch", "/demo/app/app.js", "/demo/app/config.json"} {
				resp, _ := get(p)
				if resp.StatusCode != want {
					t.Errorf("GET %s = %d, want %d", p, resp.StatusCode, want)
				}
				if demo && !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
					t.Errorf("GET %s CSP %q", p, resp.Header.Get("Content-Security-Policy"))
				}
			}
			if demo {
				_, body := get("/demo/app/config.json")
				if !strings.Contains(body, `"clientId":"demo-app"`) || !strings.Contains(body, base+"/fhir") {
					t.Errorf("config.json %s", body)
				}
			}
			_, home := get("/")
			if strings.Contains(home, "/demo/app/") != demo {
				t.Errorf("home page %q", home)
			}
		})
	}
}
