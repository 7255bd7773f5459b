// Package app is fhirgate's composition root: it builds every component from a validated
// config.Config, knows every concrete type, and owns the start and stop order of the servers.
package app
