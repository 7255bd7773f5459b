package adminapi

import (
	"errors"
	"net/http"

	"github.com/fhirgate/fhirgate/internal/authserver"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// listBreakGlass is GET /admin/break-glass[?status=open|closed]: the review queue of emergency
// access grants, oldest first (docs/access-control.md §3.11).
func (a *API) listBreakGlass(w http.ResponseWriter, r *http.Request) error {
	items, err := a.srv.BreakGlassReviews(r.Context(), r.URL.Query().Get("status"))
	if errors.Is(err, authserver.ErrInvalidReview) {
		return &oauth.Error{Code: oauth.InvalidRequest, Description: "status must be open or closed"}
	}
	if err != nil {
		return err
	}
	if items == nil {
		items = []sqlstore.BreakGlass{}
	}
	oauth.WriteJSON(w, http.StatusOK, map[string]any{"items": items})
	return nil
}

// closeRequest is the body of POST /admin/break-glass/{id}/close.
type closeRequest struct {
	Decision string `json:"decision"` // justified | unjustified
	Reviewer string `json:"reviewer"` // the privacy officer
	Note     string `json:"note"`
}

// closeBreakGlass is POST /admin/break-glass/{id}/close: a privacy officer's decision. An item
// is closed once; a second decision is 409.
func (a *API) closeBreakGlass(w http.ResponseWriter, r *http.Request) error {
	var req closeRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	item, err := a.srv.CloseBreakGlassReview(r, r.PathValue("id"), req.Decision, req.Reviewer, req.Note)
	switch {
	case errors.Is(err, authserver.ErrInvalidReview):
		return &oauth.Error{Code: oauth.InvalidRequest, Description: "decision must be justified or unjustified, and reviewer is required"}
	case errors.Is(err, authserver.ErrReviewClosed):
		writeErr(w, http.StatusConflict, "conflict", "the review item is already closed")
		return nil
	case err != nil:
		return err
	}
	oauth.WriteJSON(w, http.StatusOK, item)
	return nil
}
