package demoapp

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkServe compares the handler (assets in memory, ETag precomputed, CSP set) with the
// baseline of http.FileServer over the same embedded files.
func BenchmarkServe(b *testing.B) {
	h, err := New(Config{FHIRBase: "http://localhost:8080/fhir", ClientID: "demo-app"})
	if err != nil {
		b.Fatal(err)
	}
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		b.Fatal(err)
	}
	baseline := http.StripPrefix("/demo/app/", http.FileServer(http.FS(sub)))
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{{"baseline-FileServer", baseline}, {"Handler", h}} {
		b.Run(tc.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/demo/app/app.js", nil)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				tc.h.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatal(w.Code)
				}
			}
		})
	}
}
