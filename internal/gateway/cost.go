package gateway

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// MaxCost caps the cost of one request.
const MaxCost = 100

// Cost is the number of rate-limit points a request spends in weighted rules, from its FHIR
// interaction and the shape of its query string. The table (docs/gateway.md has it too):
//
//	read, vread, /fhir/metadata, any non-FHIR route      1
//	create, update, patch, delete (one instance)         2
//	instance history                                     2
//	type or system history                               4
//	search (type, system, compartment, conditional ops)  2 + query surcharges
//	  POST _search (parameters in the body, unseen)      +2
//	  conditional create/update/patch/delete             +2
//	transaction or batch (POST /fhir)                    10
//	$everything, $export                                 20
//	other operations ($validate, $lastn, ...)            5
//
// Query surcharges, added to a search:
//
//	each _include or _revinclude                         +2 (+5 with :iterate or :recurse)
//	each chained parameter (a.b=, _has:)                 +3
//	_total=accurate                                      +3
//	_sort                                                +1
//	_contained other than false                          +2
//	_count above 100                                     +1 per started 100 above the first
//
// The result is between 1 and MaxCost; a rule spends at most its burst.
func Cost(r *http.Request) int {
	path := r.URL.Path
	if path != "/fhir" && !strings.HasPrefix(path, "/fhir/") {
		return 1
	}
	rest := strings.Trim(path[len("/fhir"):], "/")
	var segs []string
	if rest != "" {
		segs = strings.Split(rest, "/")
	}
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	for _, s := range segs {
		if strings.HasPrefix(s, "$") {
			switch s {
			case "$everything", "$export":
				return 20
			}
			return 5
		}
	}
	search := func(extra int) int { return clampCost(2 + extra + querySurcharge(r.URL.RawQuery)) }
	postSearch := 0
	if r.Method == http.MethodPost {
		postSearch = 2
	}
	switch len(segs) {
	case 0:
		if r.Method == http.MethodPost {
			return 10
		}
		return search(0)
	case 1:
		switch {
		case segs[0] == "metadata":
			return 1
		case segs[0] == "_history":
			return 4
		case segs[0] == "_search":
			return search(postSearch)
		case read:
			return search(0)
		case r.Method == http.MethodPost:
			if r.Header.Get("If-None-Exist") != "" {
				return search(2)
			}
			return 2
		default: // conditional update, patch or delete
			return search(2)
		}
	case 2:
		switch {
		case segs[1] == "_search":
			return search(postSearch)
		case segs[1] == "_history":
			return 4
		case read:
			return 1
		default:
			return 2
		}
	case 3:
		if segs[2] == "_history" {
			return 2
		}
		return search(postSearch) // compartment search
	case 4:
		if segs[2] == "_history" {
			return 1 // vread
		}
		if segs[3] == "_search" {
			return search(postSearch)
		}
	}
	return 1
}

func clampCost(c int) int { return min(max(c, 1), MaxCost) }

// querySurcharge adds the surcharges of a raw query string. It scans without building a map.
func querySurcharge(q string) int {
	extra := 0
	for q != "" {
		var field string
		field, q, _ = strings.Cut(q, "&")
		if field == "" {
			continue
		}
		name, value, _ := strings.Cut(field, "=")
		name, value = unescapeQuery(name), unescapeQuery(value)
		base, modifier, _ := strings.Cut(name, ":")
		switch {
		case base == "_include" || base == "_revinclude":
			if modifier == "iterate" || modifier == "recurse" {
				extra += 5
			} else {
				extra += 2
			}
		case base == "_has" || strings.Contains(name, "."):
			extra += 3
		case name == "_total":
			if value == "accurate" {
				extra += 3
			}
		case name == "_sort":
			extra++
		case name == "_contained":
			if value != "false" {
				extra += 2
			}
		case name == "_count":
			if n, err := strconv.Atoi(value); err == nil && n > 100 {
				extra += (min(n, 1_000_000) - 1) / 100
			}
		}
		if extra >= MaxCost {
			return MaxCost
		}
	}
	return extra
}

func unescapeQuery(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	u, err := url.QueryUnescape(s)
	if err != nil {
		return s
	}
	return u
}
