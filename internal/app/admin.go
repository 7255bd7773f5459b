package app

import "net/http"

// AdminHandler is the admin listener's handler (nil without an admin address), for tests that
// drive the admin API without a second listener.
func (a *App) AdminHandler() http.Handler {
	if a.admin == nil {
		return nil
	}
	return a.admin.Handler
}
