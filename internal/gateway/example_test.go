package gateway_test

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/gateway"
)

// The composition root wraps each route group once and lets the gateway configure the server.
func Example() {
	cfg := config.Default()
	gw, err := gateway.New(cfg.Gateway, gateway.Deps{
		Logger: slog.Default(),
		Now:    time.Now,
		// Cheap identity for rate-limit keys; Verified only if the token was checked.
		Identify: func(r *http.Request) gateway.Identity { return gateway.Identity{} },
		// Origins of registered clients' redirect URIs.
		AllowedOrigin: func(origin string) bool { return origin == "https://app.example.org" },
	})
	if err != nil {
		panic(err)
	}
	defer gw.Close()

	var fhirAPI, discovery, token, login http.Handler = http.NotFoundHandler(), http.NotFoundHandler(), http.NotFoundHandler(), http.NotFoundHandler()
	mux := http.NewServeMux()
	mux.Handle("/fhir/", gw.Wrap(config.GroupFHIR, fhirAPI))
	mux.Handle("GET /fhir/metadata", gw.Wrap(config.GroupDiscovery, fhirAPI))
	mux.Handle("/fhir/.well-known/", gw.Wrap(config.GroupDiscovery, discovery))
	mux.Handle("/.well-known/", gw.Wrap(config.GroupDiscovery, discovery))
	mux.Handle("/auth/token", gw.Wrap(config.GroupOAuth, token))
	mux.Handle("/auth/login", gw.Wrap(config.GroupLogin, login))

	srv := &http.Server{Addr: cfg.Addr, Handler: mux}
	gw.ConfigureServer(srv) // header size, header timeout, TLS
	_ = srv                 // srv.ListenAndServeTLS("", "") when srv.TLSConfig != nil
}
