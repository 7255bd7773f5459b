package web_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/web"
)

func TestRenderEscapesAndSetsHeaders(t *testing.T) {
	p, err := web.Load()
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	p.Render(w, 200, "consent", web.ConsentData{Action: "/auth/interaction/x/consent", CSRF: "tok", ClientName: `<script>alert(1)</script>`,
		Scopes: []web.ScopeOption{{Value: "patient/Patient.rs", Label: "read", Checked: true}}})
	body := w.Body.String()
	if strings.Contains(body, "<script>") {
		t.Fatal("client name not escaped")
	}
	for _, want := range []string{`name="csrf" value="tok"`, `name="scope" value="patient/Patient.rs" checked`, `name="decision" value="allow"`, `name="decision" value="deny"`} {
		if !strings.Contains(body, want) {
			t.Errorf("consent page lacks %s", want)
		}
	}
	h := w.Header()
	if h.Get("Cache-Control") != "no-store" || h.Get("X-Frame-Options") != "DENY" || !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("headers %v", h)
	}
	for _, page := range []string{"error", "login", "picker", "ehr", "grants"} {
		w := httptest.NewRecorder()
		var data any
		switch page {
		case "error":
			data = web.ErrorData{}
		case "login":
			data = web.LoginData{}
		case "picker":
			data = web.PickerData{}
		case "ehr":
			data = web.EHRData{}
		case "grants":
			data = web.GrantsData{}
		}
		p.Render(w, 200, page, data)
		if w.Code != 200 {
			t.Errorf("%s: %d", page, w.Code)
		}
	}
}
