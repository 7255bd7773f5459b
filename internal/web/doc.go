// Package web owns fhirgate's HTML: the templates of the login, patient picker, consent, error
// and EHR launcher pages, embedded in the binary. Pages are plain forms that work without
// JavaScript; the form field names are the contract in DESIGN.md.
package web
