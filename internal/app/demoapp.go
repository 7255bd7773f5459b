package app

import (
	"net/http"

	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/demoapp"
)

// mountDemoApp serves the demo SMART app at /demo/app/ in demo mode. Its files are public static
// content, so it shares the discovery group's limits (a page load fetches four files, which
// would eat the login pages' per-IP budget).
func (a *App) mountDemoApp(mux *http.ServeMux, wrap func(string, http.Handler) http.Handler) {
	if a.demo == nil {
		return
	}
	h, err := demoapp.New(demoapp.Config{FHIRBase: a.cfg.FHIRBase(), ClientID: demoClientID})
	if err != nil {
		a.log.Error("the demo app is not served", "error", err)
		return
	}
	mux.Handle(demoapp.Path, wrap(config.GroupDiscovery, h))
}

// demoAppURL is where `serve --demo` tells a person to start.
func (a *App) demoAppURL() string { return a.cfg.Issuer() + demoapp.Path }
