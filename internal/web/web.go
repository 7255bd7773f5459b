package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
)

//go:embed templates/*.html
var files embed.FS

// Pages are the parsed templates.
type Pages struct {
	t map[string]*template.Template
}

var names = []string{"error", "login", "consent", "picker", "ehr", "grants"}

// Load parses the embedded templates.
func Load() (*Pages, error) {
	p := &Pages{t: map[string]*template.Template{}}
	for _, n := range names {
		t, err := template.New("layout.html").ParseFS(files, "templates/layout.html", "templates/"+n+".html")
		if err != nil {
			return nil, fmt.Errorf("web: %s: %w", n, err)
		}
		p.t[n] = t
	}
	return p, nil
}

// Render writes page name with data and status. Pages are never cached, may not be framed and
// load nothing from elsewhere.
func (p *Pages) Render(w http.ResponseWriter, status int, name string, data any) {
	t, ok := p.t[name]
	if !ok {
		http.Error(w, "page not found", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		http.Error(w, "page rendering failed", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// ErrorData is the data of the error page.
type ErrorData struct {
	Title   string
	Message string
}

// LoginData is the data of the login page.
type LoginData struct {
	Action     string
	CSRF       string
	ClientName string
	Username   string
	Error      string
}

// ScopeOption is one consent checkbox.
type ScopeOption struct {
	Value   string
	Label   string
	Checked bool
	// Sub marks a category sub-scope offered in place of a resource-level scope.
	Sub bool
}

// ConsentData is the data of the consent page.
type ConsentData struct {
	Action     string
	CSRF       string
	ClientName string
	Username   string
	Patient    string
	Scopes     []ScopeOption
}

// PatientRow is one patient in the picker and the EHR launcher.
type PatientRow struct {
	ID, Name, BirthDate, Gender string
}

// PickerData is the data of the patient picker.
type PickerData struct {
	Action   string
	Search   string
	CSRF     string
	Query    string
	Patients []PatientRow
	Error    string
}

// App is an app the EHR launcher can launch.
type App struct {
	ClientID, Name string
}

// EHRData is the data of the EHR launcher.
type EHRData struct {
	LoggedIn bool
	Username string
	CSRF     string
	// LogoutCSRF is the token of the sign-out form.
	LogoutCSRF string
	Query      string
	Patients   []PatientRow
	Apps       []App
	Error      string
}

// Grant is one app's access in the grants page.
type Grant struct {
	ID, Client, Scope, Patient, Until string
}

// GrantsData is the data of the page where users see and revoke app access.
type GrantsData struct {
	LoggedIn bool
	Username string
	CSRF     string
	// LogoutCSRF is the token of the sign-out form.
	LogoutCSRF string
	Grants     []Grant
	Error      string
}
