package authserver_test

import (
	"net/http"
	"net/url"
	"strings"
)

// authParams builds a standalone authorization request.
func (e *env) authParams(client, redirect, scope, challenge string) url.Values {
	return url.Values{
		"response_type": {"code"}, "client_id": {client}, "redirect_uri": {redirect}, "scope": {scope},
		"state": {"st-" + strings.Repeat("x", 10) + "/+=&é"}, "aud": {e.fhirBase},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "nonce": {"nonce-123456789"},
	}
}

type flowOpts struct {
	user, pw string
	patient  string        // picker choice
	consent  func(f *form) // edits the consent form before Allow
	deny     bool
	post     bool   // authorize with POST
	stopAt   string // "login" | "consent": return the page instead
}

// authorize drives the authorization through the HTML forms and returns the redirect to the app.
func (e *env) authorize(b *browser, params url.Values, o flowOpts) (*url.URL, page) {
	t := e.t
	t.Helper()
	var p page
	if o.post {
		p = b.post(e.issuer+"/auth/authorize", params)
	} else {
		p = b.get(e.issuer + "/auth/authorize?" + params.Encode())
	}
	for range 6 {
		if p.status == http.StatusFound || p.status == http.StatusSeeOther {
			loc, err := url.Parse(p.header.Get("Location"))
			if err != nil {
				t.Fatal(err)
			}
			return loc, p
		}
		if p.status != http.StatusOK && p.status != http.StatusUnauthorized {
			return nil, p
		}
		forms := p.forms(t)
		switch {
		case hasForm(forms, "/login"):
			if o.stopAt == "login" {
				return nil, p
			}
			f := p.form(t, "/login")
			f.fields.Set("username", o.user)
			f.fields.Set("password", o.pw)
			p = b.post(f.action, f.fields)
			if p.status == http.StatusUnauthorized || p.status == http.StatusTooManyRequests {
				return nil, p
			}
		case hasForm(forms, "/patient"):
			f := p.form(t, "/patient")
			if o.patient != "" {
				f.fields.Set("patient", o.patient)
			}
			p = b.post(f.action, f.fields)
		case hasForm(forms, "/consent"):
			if o.stopAt == "consent" {
				return nil, p
			}
			f := p.form(t, "/consent")
			if o.consent != nil {
				o.consent(&f)
			}
			if o.deny {
				f.fields.Set("decision", "deny")
			} else {
				f.fields.Set("decision", "allow")
			}
			p = b.post(f.action, f.fields)
		default:
			return nil, p
		}
	}
	t.Fatalf("authorization did not finish; last page %d:\n%s", p.status, p.body)
	return nil, p
}

func hasForm(fs []form, part string) bool {
	for _, f := range fs {
		if strings.Contains(f.action, part) {
			return true
		}
	}
	return false
}
