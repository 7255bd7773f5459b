// Package demoapp serves fhirgate's demo SMART app, a browser app built on the SMART JavaScript
// client (fhirclient) from web/demoapp and embedded here as built files (dist/), so that
// `fhirgate serve --demo` shows a working app on a machine without Node. It is mounted at
// /demo/app/ only in demo mode.
package demoapp

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Path is where the app is served; its redirect URI is Path and its launch URL Path + "launch".
const Path = "/demo/app/"

//go:embed dist
var dist embed.FS

// Config is what the app needs to know about the server that serves it.
type Config struct {
	// FHIRBase is the FHIR base URL, the iss of a standalone launch and the only iss the app
	// accepts in an EHR launch.
	FHIRBase string
	// ClientID is the app's registered (public) client id.
	ClientID string
}

type asset struct {
	body  []byte
	ctype string
	etag  string
}

// Handler serves the app. Every response carries a Content-Security-Policy that admits the
// app's own script and style and connections to its own origin and the FHIR server's.
type Handler struct {
	assets map[string]asset
	csp    string
}

// New checks the config and loads the embedded build.
func New(cfg Config) (*Handler, error) {
	base, err := url.Parse(cfg.FHIRBase)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("demoapp: FHIR base %q must be an absolute http(s) URL", cfg.FHIRBase)
	}
	if cfg.ClientID == "" {
		return nil, errors.New("demoapp: a client id is required")
	}
	h := &Handler{
		assets: map[string]asset{},
		csp: "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' " +
			base.Scheme + "://" + base.Host + "; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
	}
	files := map[string]string{
		"index.html": "text/html; charset=utf-8",
		"app.js":     "text/javascript; charset=utf-8",
		"app.css":    "text/css; charset=utf-8",
	}
	for name, ctype := range files {
		b, err := fs.ReadFile(dist, "dist/"+name)
		if err != nil {
			return nil, fmt.Errorf("demoapp: the embedded build lacks %s (run make demo-app): %w", name, err)
		}
		h.add(name, b, ctype)
	}
	conf, err := json.Marshal(map[string]string{"fhirBase": cfg.FHIRBase, "clientId": cfg.ClientID})
	if err != nil {
		return nil, err
	}
	h.add("config.json", conf, "application/json")
	return h, nil
}

func (h *Handler) add(name string, b []byte, ctype string) {
	sum := sha256.Sum256(b)
	h.assets[name] = asset{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
}

// ServeHTTP answers GET and HEAD for Path (the redirect URI), Path+"launch" (the EHR launch URL)
// and the app's files; anything else under Path is 404.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", h.csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, Path)
	if !ok {
		if r.URL.Path == strings.TrimSuffix(Path, "/") {
			http.Redirect(w, r, Path, http.StatusMovedPermanently)
			return
		}
		http.NotFound(w, r)
		return
	}
	name := rest
	if rest == "" || rest == "launch" {
		name = "index.html"
	}
	a, ok := h.assets[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	hd.Set("Content-Type", a.ctype)
	hd.Set("ETag", a.etag)
	if name == "index.html" {
		// The page is opened with a code or a launch value in its URL: never store it.
		hd.Set("Cache-Control", "no-store")
	} else {
		hd.Set("Cache-Control", "no-cache")
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}
