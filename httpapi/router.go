package httpapi

import (
	"strings"
)

// Route patterns of API v1 (DESIGN §3). They are the "route" label of the
// metrics and access logs, and docs/openapi.yaml lists exactly these
// (TestOpenAPIRoutes). A {name} segment matches one non-empty path segment.
const (
	RouteOffices       = "/v1/offices"
	RouteOffice        = "/v1/offices/{office}"
	RouteDays          = "/v1/offices/{office}/days"
	RouteSlots         = "/v1/offices/{office}/days/{date}/slots"
	RouteAgenda        = "/v1/offices/{office}/days/{date}/bookings"
	RouteRelease       = "/v1/offices/{office}/release"
	RouteClosures      = "/v1/offices/{office}/closures"
	RouteSearch        = "/v1/search"
	RouteBookings      = "/v1/bookings"
	RouteBooking       = "/v1/bookings/{id}"
	RouteConfirm       = "/v1/bookings/{id}/confirm"
	RouteCancel        = "/v1/bookings/{id}/cancel"
	RouteReschedule    = "/v1/bookings/{id}/reschedule"
	RouteCheckIn       = "/v1/bookings/{id}/check-in"
	RouteComplete      = "/v1/bookings/{id}/complete"
	RouteNoShow        = "/v1/bookings/{id}/no-show"
	RouteApproveCancel = "/v1/bookings/{id}/approve-cancel"
	RouteRejectCancel  = "/v1/bookings/{id}/reject-cancel"
	RouteForceCancel   = "/v1/bookings/{id}/force-cancel"
	RouteApprove       = "/v1/bookings/{id}/approve"
	RouteReject        = "/v1/bookings/{id}/reject"
	RouteTicket        = "/v1/bookings/{id}/ticket"
	RouteTicketPNG     = "/v1/bookings/{id}/ticket.png"
	RouteTicketPDF     = "/v1/bookings/{id}/ticket.pdf"
	RouteReceiptPDF    = "/v1/bookings/{id}/receipt.pdf"
	RouteCalendar      = "/v1/bookings/{id}/calendar.ics"
	RouteEvents        = "/v1/events"
	RouteWatches       = "/v1/watches"
	RouteWatch         = "/v1/watches/{id}"

	// routeUnmatched labels requests that matched no route.
	routeUnmatched = "unmatched"
)

// paramsMax is the most {name} segments a pattern has.
const paramsMax = 2

// access says which keys may call a route; office lists are checked by
// the handlers, which know the office.
type access uint8

const (
	accessAny      access = iota // any valid key (availability reads)
	accessPortal                 // portal scope
	accessOperator               // operator scope
	accessAdmin                  // admin scope
	// accessBooking: portal scope acting for the applicant, or operator
	// scope at the booking's office (booking reads, tickets).
	accessBooking
	// accessEvents: portal or admin scope (the outbox carries every
	// office's events).
	accessEvents
	// accessApplicant: portal scope acting for the applicant, or operator
	// scope booking for a walk-in or phone applicant at its offices.
	accessApplicant
	// accessOffice: operator or admin scope at the office of the path
	// (the agenda).
	accessOffice
)

// route is one method + pattern and its handler. Immutable after New.
type route struct {
	method  string
	pattern string
	segs    []string // pattern split at '/', without the leading empty one
	params  []string // names of the {name} segments, in order
	access  access
	// engine routes count against Config.InFlightMax; the events
	// long-poll has its own bound (Config.PollersMax) instead.
	engine bool
	// perApplicant routes carry an applicant in their body and count
	// against Config.RatePerApplicant before the key's rate.
	perApplicant bool
	handle       func(s *Server, r *request)
	metrics      routeMetrics
}

// router matches paths against the routes. Immutable after newRouter;
// safe for concurrent use.
type router struct {
	routes []*route
}

func newRouter(routes []*route) *router {
	for _, rt := range routes {
		if !strings.HasPrefix(rt.pattern, "/") {
			panic("BUG: httpapi: route pattern without leading slash: " + rt.pattern)
		}
		rt.segs = strings.Split(rt.pattern[1:], "/")
		for _, s := range rt.segs {
			if isParam(s) {
				rt.params = append(rt.params, s[1:len(s)-1])
			}
		}
		if len(rt.params) > paramsMax {
			panic("BUG: httpapi: too many parameters in " + rt.pattern)
		}
	}
	return &router{routes: routes}
}

func isParam(seg string) bool { return len(seg) > 2 && seg[0] == '{' && seg[len(seg)-1] == '}' }

// match finds the route of method and path and fills params. When the
// path matches routes of other methods only, it returns nil and their
// methods (for 405 and Allow); when nothing matches, nil and "".
func (rt *router) match(method, path string, params *[paramsMax]string) (*route, string) {
	var allow []string
	for _, r := range rt.routes {
		if !matchPath(r.segs, path, params) {
			continue
		}
		if r.method == method {
			return r, ""
		}
		allow = append(allow, r.method)
	}
	return nil, strings.Join(allow, ", ")
}

// matchPath reports whether path matches the pattern segments, writing
// the {name} segments to params in order.
func matchPath(segs []string, path string, params *[paramsMax]string) bool {
	if len(path) == 0 || path[0] != '/' {
		return false
	}
	rest := path[1:]
	n := 0
	for i, seg := range segs {
		var part string
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			part, rest = rest[:j], rest[j+1:]
			if i == len(segs)-1 {
				return false // more segments than the pattern
			}
		} else {
			if i != len(segs)-1 {
				return false // fewer segments than the pattern
			}
			part, rest = rest, ""
		}
		if isParam(seg) {
			if part == "" {
				return false
			}
			params[n] = part
			n++
		} else if part != seg {
			return false
		}
	}
	return true
}
