package api

import "net/http"

// Error codes: the `code` of a problem+json answer, what clients branch
// on. Part of the API: never renamed, never reused for another meaning.
const (
	CodeValidationFailed = "validation_failed" // 400
	CodeUnauthorized     = "unauthorized"      // 401
	CodeForbidden        = "forbidden"         // 403
	CodeNotFound         = "not_found"         // 404
	// CodeMethodNotAllowed: the path exists, the method does not (405, with Allow).
	CodeMethodNotAllowed = "method_not_allowed"
	// CodeRequestTimeout (408): the request was not received within the
	// server's read timeout.
	CodeRequestTimeout = "request_timeout"
	// CodeSlotTaken (409) comes with alternatives: the nearest free starts.
	CodeSlotTaken           = "slot_taken"
	CodeInvalidTransition   = "invalid_transition"    // 409
	CodeDuplicateBooking    = "duplicate_booking"     // 409
	CodeIdempotencyInFlight = "idempotency_in_flight" // 409
	// CodeLayoutInUse (409): an office config replacement would move seats
	// that active bookings own.
	CodeLayoutInUse = "layout_in_use"
	// CodeBodyTooLarge (413): the request body exceeds the server's bound.
	CodeBodyTooLarge = "body_too_large"
	// CodeCursorExpired (410): the event feed's cursor is below the
	// retention's deletion mark, so events after it are gone; read again
	// without a cursor (from the oldest event kept).
	CodeCursorExpired = "cursor_expired"
	// CodeHeadersTooLarge (431): the request headers exceed the server's bound.
	CodeHeadersTooLarge     = "headers_too_large"
	CodeNotReleased         = "not_released"           // 422
	CodeTooLateToCancel     = "too_late_to_cancel"     // 422
	CodeTooLateToReschedule = "too_late_to_reschedule" // 422
	CodeNotReschedulable    = "not_reschedulable"      // 422
	CodeRescheduleLimit     = "reschedule_limit"       // 422
	// CodeHistoryLimit (422): the booking's history has no room for the
	// change asked (a late cancel request or a reschedule).
	CodeHistoryLimit = "history_limit"
	CodeLimitReached = "limit_reached" // 422
	// CodeApplicantBlocked (422) comes with blocked_until: when the
	// applicant may book again.
	CodeApplicantBlocked = "applicant_blocked"
	// CodeCancelNotOnline (422): the service's bookings are cancelled by
	// the office only (online_cancel false); an operator force-cancels.
	CodeCancelNotOnline     = "cancel_not_online"
	CodeIdempotencyMismatch = "idempotency_mismatch" // 422
	// CodeTicketInvalid (422): the ticket presented at check-in is
	// malformed, forged, or of another booking.
	CodeTicketInvalid = "ticket_invalid"
	CodeRateLimited   = "rate_limited" // 429, with Retry-After
	// CodeInternal (500): a bug in the server (a recovered panic); never the
	// client's input.
	CodeInternal   = "internal"
	CodeOverloaded = "overloaded" // 503, with Retry-After
	CodeNotReady   = "not_ready"  // 503, with Retry-After
	CodeDegraded   = "degraded"   // 503, with Retry-After
	// CodeNoLeader: a cluster node cannot reach the leader of the office's
	// Raft group, or the group is electing one; retry.
	CodeNoLeader = "no_leader" // 503, with Retry-After
	// CodeOfficeMoving: the office (or the booking's office) is moving
	// between the cluster's groups, a matter of moments; retry.
	CodeOfficeMoving = "office_moving" // 503, with Retry-After
)

// CodeInfo is what a code means on the wire: its HTTP status and the
// problem's title.
type CodeInfo struct {
	Status int
	Title  string
}

// Codes lists every error code with its status and title; a code missing
// here is not part of the API. Callers must not modify it.
var Codes = map[string]CodeInfo{
	CodeValidationFailed:    {http.StatusBadRequest, "The request is malformed"},
	CodeUnauthorized:        {http.StatusUnauthorized, "Missing or unknown API key"},
	CodeForbidden:           {http.StatusForbidden, "The API key may not do this"},
	CodeNotFound:            {http.StatusNotFound, "Not found"},
	CodeMethodNotAllowed:    {http.StatusMethodNotAllowed, "Method not allowed"},
	CodeSlotTaken:           {http.StatusConflict, "The slot is taken"},
	CodeInvalidTransition:   {http.StatusConflict, "The booking's status does not allow this"},
	CodeDuplicateBooking:    {http.StatusConflict, "The applicant already has an active booking for this service"},
	CodeIdempotencyInFlight: {http.StatusConflict, "A request with this Idempotency-Key is still running"},
	CodeLayoutInUse:         {http.StatusConflict, "Active bookings depend on the office layout"},
	CodeRequestTimeout:      {http.StatusRequestTimeout, "The request was not received in time"},
	CodeCursorExpired:       {http.StatusGone, "Events after the cursor were deleted by retention"},
	CodeBodyTooLarge:        {http.StatusRequestEntityTooLarge, "The request body is too large"},
	CodeHeadersTooLarge:     {http.StatusRequestHeaderFieldsTooLarge, "The request headers are too large"},
	CodeNotReleased:         {http.StatusUnprocessableEntity, "The date or time is not bookable"},
	CodeTooLateToCancel:     {http.StatusUnprocessableEntity, "Too late to cancel"},
	CodeTooLateToReschedule: {http.StatusUnprocessableEntity, "Too late to reschedule"},
	CodeNotReschedulable:    {http.StatusUnprocessableEntity, "The service cannot be rescheduled"},
	CodeRescheduleLimit:     {http.StatusUnprocessableEntity, "The booking was rescheduled too many times"},
	CodeHistoryLimit:        {http.StatusUnprocessableEntity, "The booking's history has no room for this change"},
	CodeLimitReached:        {http.StatusUnprocessableEntity, "The applicant has too many active bookings"},
	CodeApplicantBlocked:    {http.StatusUnprocessableEntity, "The applicant is blocked from booking for a while"},
	CodeCancelNotOnline:     {http.StatusUnprocessableEntity, "The office cancels bookings of this service; ask the office"},
	CodeIdempotencyMismatch: {http.StatusUnprocessableEntity, "The Idempotency-Key was used with a different request"},
	CodeTicketInvalid:       {http.StatusUnprocessableEntity, "The ticket is not valid for this booking"},
	CodeRateLimited:         {http.StatusTooManyRequests, "Too many requests"},
	CodeInternal:            {http.StatusInternalServerError, "Internal server error"},
	CodeOverloaded:          {http.StatusServiceUnavailable, "The server is overloaded"},
	CodeNotReady:            {http.StatusServiceUnavailable, "The server is not ready"},
	CodeDegraded:            {http.StatusServiceUnavailable, "The server cannot write: storage failed"},
	CodeNoLeader:            {http.StatusServiceUnavailable, "The office's replica group has no reachable leader right now"},
	CodeOfficeMoving:        {http.StatusServiceUnavailable, "The office is moving between replica groups right now"},
}

// ProblemTypePrefix + code is a problem's "type" URI (RFC 9457).
const ProblemTypePrefix = "urn:slotd:problem:"

// Problem is an application/problem+json answer.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
	// Alternatives, with slot_taken: the nearest free starts, the same
	// office first, then the other offices of its region.
	Alternatives []Opening `json:"alternatives,omitempty"`
	// BlockedUntil, with applicant_blocked: the end of the block, RFC
	// 3339 in the office's offset.
	BlockedUntil string `json:"blocked_until,omitempty"`
}
