// Package adminapi owns fhirgate's admin HTTP API on the admin listener: OAuth clients, local
// users, EHR launch contexts and signing keys, behind one bearer token compared in constant time.
package adminapi
