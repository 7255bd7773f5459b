package oauth_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/fhirgate/fhirgate/internal/oauth"
)

func TestWriteError(t *testing.T) {
	cases := []struct {
		err    error
		status int
		code   string
		basic  bool
	}{
		{oauth.New(oauth.InvalidGrant, "bad code"), 400, "invalid_grant", false},
		{oauth.New(oauth.InvalidClient, "nope"), 401, "invalid_client", true},
		{&oauth.Error{Code: oauth.InvalidRequest, Status: 405}, 405, "invalid_request", false},
		{errors.New("database on fire"), 500, "server_error", false},
	}
	for _, tc := range cases {
		r := httptest.NewRequest(http.MethodPost, "/token", nil)
		if tc.basic {
			r.SetBasicAuth("a", "b")
		}
		w := httptest.NewRecorder()
		oauth.WriteError(w, r, tc.err)
		var body map[string]string
		json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != tc.status || body["error"] != tc.code || w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("Pragma") != "no-cache" {
			t.Errorf("%v: %d %v %v", tc.err, w.Code, body, w.Header())
		}
		if (w.Header().Get("WWW-Authenticate") != "") != tc.basic {
			t.Errorf("%v: WWW-Authenticate %q", tc.err, w.Header().Get("WWW-Authenticate"))
		}
		if body["error_description"] == "database on fire" {
			t.Error("internal error text leaked")
		}
	}
}
