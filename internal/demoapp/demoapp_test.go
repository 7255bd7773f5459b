package demoapp_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/demoapp"
)

func serve(t *testing.T) *httptest.Server {
	t.Helper()
	h, err := demoapp.New(demoapp.Config{FHIRBase: "https://ehr.example:8443/fhir", ClientID: "demo-app"})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(demoapp.Path, h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, method, u string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestServes(t *testing.T) {
	srv := serve(t)
	cases := []struct {
		path, ctype, cache string
		status             int
		body               string
	}{
		{"/demo/app/", "text/html; charset=utf-8", "no-store", 200, `<script type="module" src="app.js"></script>`},
		{"/demo/app/launch", "text/html; charset=utf-8", "no-store", 200, `<script type="module" src="app.js"></script>`},
		{"/demo/app/app.js", "text/javascript; charset=utf-8", "no-cache", 200, "smart-configuration"},
		{"/demo/app/app.css", "text/css; charset=utf-8", "no-cache", 200, "svg.chart"},
		{"/demo/app/config.json", "application/json", "no-cache", 200, `"fhirBase":"https://ehr.example:8443/fhir"`},
		{"/demo/app/index.html", "text/html; charset=utf-8", "no-store", 200, "<title>"},
		{"/demo/app/build.mjs", "", "", 404, ""},
		{"/demo/app/launch/x", "", "", 404, ""},
		{"/demo/app/dist/app.js", "", "", 404, ""},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			resp, body := do(t, "GET", srv.URL+tc.path, nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			csp := resp.Header.Get("Content-Security-Policy")
			if !strings.Contains(csp, "script-src 'self';") || strings.Contains(csp, "unsafe") ||
				!strings.Contains(csp, "connect-src 'self' https://ehr.example:8443;") || !strings.Contains(csp, "frame-ancestors 'none'") {
				t.Errorf("CSP %q", csp)
			}
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Error("no nosniff")
			}
			if tc.status != 200 {
				return
			}
			if got := resp.Header.Get("Content-Type"); got != tc.ctype {
				t.Errorf("Content-Type %q", got)
			}
			if got := resp.Header.Get("Cache-Control"); got != tc.cache {
				t.Errorf("Cache-Control %q", got)
			}
			if !strings.Contains(body, tc.body) {
				t.Errorf("body lacks %q", tc.body)
			}
		})
	}
}

func TestConfigJSON(t *testing.T) {
	resp, body := do(t, "GET", serve(t).URL+"/demo/app/config.json", nil)
	var c map[string]string
	if err := json.Unmarshal([]byte(body), &c); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %v", resp.StatusCode, err)
	}
	if len(c) != 2 || c["clientId"] != "demo-app" || c["fhirBase"] != "https://ehr.example:8443/fhir" {
		t.Errorf("config %v", c)
	}
}

func TestMethodsAndRevalidation(t *testing.T) {
	srv := serve(t)
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH"} {
		resp, _ := do(t, m, srv.URL+"/demo/app/", nil)
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: %d %q", m, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	resp, _ := do(t, "GET", srv.URL+"/demo/app/app.js", nil)
	etag := resp.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	resp, body := do(t, "GET", srv.URL+"/demo/app/app.js", map[string]string{"If-None-Match": etag})
	if resp.StatusCode != http.StatusNotModified || body != "" {
		t.Errorf("revalidation: %d", resp.StatusCode)
	}
	resp, _ = do(t, "HEAD", srv.URL+"/demo/app/", nil)
	if resp.StatusCode != 200 {
		t.Errorf("HEAD: %d", resp.StatusCode)
	}
}

// The page has no inline script or style and no external origin: it runs under the strict CSP.
func TestPageHasNothingInline(t *testing.T) {
	_, body := do(t, "GET", serve(t).URL+"/demo/app/", nil)
	if regexp.MustCompile(`<script(?:[^>]*)>[^<]+</script>|<style|\sstyle=|\son[a-z]+=|https?://`).MatchString(body) {
		t.Errorf("inline script, style, handler or external URL in the page:\n%s", body)
	}
	_, js := do(t, "GET", serve(t).URL+"/demo/app/app.js", nil)
	for _, bad := range []string{"eval(", "new Function(", "console.log("} {
		if strings.Contains(js, bad) {
			t.Errorf("app.js contains %q", bad)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, c := range []demoapp.Config{
		{FHIRBase: "", ClientID: "x"},
		{FHIRBase: "ftp://h/fhir", ClientID: "x"},
		{FHIRBase: "/fhir", ClientID: "x"},
		{FHIRBase: "http://h/fhir", ClientID: ""},
	} {
		if _, err := demoapp.New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}
