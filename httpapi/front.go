package httpapi

// What a front that merges the answers of several Servers needs to know
// (a cluster node's, which asks every Raft group for a route that spans
// them: GET /v1/offices, /v1/search, /v1/bookings?applicant=).
const (
	// SearchLimitDefault is GET /v1/search's limit when none is given.
	SearchLimitDefault = searchLimitDefault
	// BookingsPageDefault is GET /v1/bookings's limit when none is given.
	BookingsPageDefault = bookingsPageDefault
)
