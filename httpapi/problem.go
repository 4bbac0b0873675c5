package httpapi

import (
	"errors"
	"strconv"
	"strings"

	"slotd/allocator"
)

// Error codes: the stable machine codes of DESIGN §3 that clients branch on.
// They are part of the API, spelled once here; docs/openapi.yaml lists the
// same set (TestOpenAPICodes).
const (
	CodeValidationFailed = "validation_failed" // 400
	CodeUnauthorized     = "unauthorized"      // 401
	CodeForbidden        = "forbidden"         // 403
	CodeNotFound         = "not_found"         // 404
	// CodeMethodNotAllowed: the path exists, the method does not (405, with Allow).
	CodeMethodNotAllowed    = "method_not_allowed"    // 405
	CodeSlotTaken           = "slot_taken"            // 409, with alternatives
	CodeInvalidTransition   = "invalid_transition"    // 409
	CodeDuplicateBooking    = "duplicate_booking"     // 409
	CodeIdempotencyInFlight = "idempotency_in_flight" // 409
	// CodeLayoutInUse: an office config replacement would move seats,
	// drop a service or close a date under active bookings (409).
	CodeLayoutInUse = "layout_in_use"
	// CodeBodyTooLarge: the request body exceeds Config.BodyBytesMax (413).
	CodeBodyTooLarge = "body_too_large"
	// CodeRequestTimeout (408): the request was not received within the
	// read timeout (a stalled or slowloris client); the connection closes.
	CodeRequestTimeout = "request_timeout"
	// CodeHeadersTooLarge: the request headers exceed Config.HeaderBytesMax (431).
	CodeHeadersTooLarge     = "headers_too_large"
	CodeNotReleased         = "not_released"           // 422
	CodeTooLateToCancel     = "too_late_to_cancel"     // 422
	CodeTooLateToReschedule = "too_late_to_reschedule" // 422
	CodeNotReschedulable    = "not_reschedulable"      // 422
	CodeRescheduleLimit     = "reschedule_limit"       // 422
	CodeHistoryLimit        = "history_limit"          // 422, allocator.HistoryEntriesMax
	CodeLimitReached        = "limit_reached"          // 422
	CodeApplicantBlocked    = "applicant_blocked"      // 422
	CodeIdempotencyMismatch = "idempotency_mismatch"   // 422
	// CodeTicketInvalid: the ticket presented at check-in is malformed,
	// forged, altered, for another booking, or for a start the booking no
	// longer has (it was rescheduled) (422).
	CodeTicketInvalid = "ticket_invalid"
	CodeRateLimited   = "rate_limited" // 429, with Retry-After
	// CodeInternal: a bug in the server (a recovered panic); never the
	// answer to bad input (500).
	CodeInternal   = "internal"
	CodeOverloaded = "overloaded" // 503, with Retry-After
	CodeNotReady   = "not_ready"  // 503, with Retry-After
	CodeDegraded   = "degraded"   // 503, with Retry-After
)

// problemTypePrefix + code is the problem's "type" URI (RFC 9457).
const problemTypePrefix = "urn:slotd:problem:"

// codeInfo is what the edge says for a code: HTTP status and title.
type codeInfo struct {
	status int
	title  string
}

// codes maps every code to its status and title. TestCodesComplete checks
// that every constant above has an entry.
var codes = map[string]codeInfo{
	CodeValidationFailed:    {400, "The request is malformed"},
	CodeUnauthorized:        {401, "Missing or unknown API key"},
	CodeForbidden:           {403, "The API key may not do this"},
	CodeNotFound:            {404, "Not found"},
	CodeMethodNotAllowed:    {405, "Method not allowed"},
	CodeSlotTaken:           {409, "The slot is taken"},
	CodeInvalidTransition:   {409, "The booking's status does not allow this"},
	CodeDuplicateBooking:    {409, "The applicant already has an active booking for this service at this office"},
	CodeIdempotencyInFlight: {409, "A request with this Idempotency-Key is still running"},
	CodeLayoutInUse:         {409, "Active bookings depend on the office layout"},
	CodeRequestTimeout:      {408, "The request was not received in time"},
	CodeBodyTooLarge:        {413, "The request body is too large"},
	CodeHeadersTooLarge:     {431, "The request headers are too large"},
	CodeNotReleased:         {422, "The date or time is not bookable"},
	CodeTooLateToCancel:     {422, "Too late to cancel"},
	CodeTooLateToReschedule: {422, "Too late to reschedule"},
	CodeNotReschedulable:    {422, "The service cannot be rescheduled"},
	CodeRescheduleLimit:     {422, "The booking was rescheduled too many times"},
	CodeHistoryLimit:        {422, "The booking's history has no room for this change"},
	CodeLimitReached:        {422, "The applicant has too many active bookings"},
	CodeApplicantBlocked:    {422, "The applicant is blocked from booking for a while"},
	CodeIdempotencyMismatch: {422, "The Idempotency-Key was used with a different request"},
	CodeTicketInvalid:       {422, "The ticket is not valid for this booking"},
	CodeRateLimited:         {429, "Too many requests"},
	CodeInternal:            {500, "Internal server error"},
	CodeOverloaded:          {503, "The server is overloaded"},
	CodeNotReady:            {503, "The server is not ready"},
	CodeDegraded:            {503, "The server cannot write: storage failed"},
}

// sentinelCodes maps allocator sentinels to codes, checked in order with
// errors.Is.
var sentinelCodes = []struct {
	err  error
	code string
}{
	{allocator.ErrOfficeNotFound, CodeNotFound},
	{allocator.ErrServiceNotFound, CodeNotFound},
	{allocator.ErrBookingNotFound, CodeNotFound},
	{allocator.ErrWatchNotFound, CodeNotFound},
	{allocator.ErrSlotTaken, CodeSlotTaken},
	{allocator.ErrInvalidTransition, CodeInvalidTransition},
	{allocator.ErrDuplicateBooking, CodeDuplicateBooking},
	{allocator.ErrNotReleased, CodeNotReleased},
	{allocator.ErrTooLateToCancel, CodeTooLateToCancel},
	{allocator.ErrTooLateToReschedule, CodeTooLateToReschedule},
	{allocator.ErrNotReschedulable, CodeNotReschedulable},
	{allocator.ErrRescheduleLimit, CodeRescheduleLimit},
	{allocator.ErrHistoryLimit, CodeHistoryLimit},
	{allocator.ErrLimitReached, CodeLimitReached},
	{allocator.ErrApplicantBlocked, CodeApplicantBlocked},
	{allocator.ErrLayoutInUse, CodeLayoutInUse},
	{allocator.ErrOverloaded, CodeOverloaded},
	{allocator.ErrDegraded, CodeDegraded},
	{allocator.ErrValidation, CodeValidationFailed},
}

// Retry-After values, in seconds, of the refusals that carry one.
const (
	retryAfterOverloadedSeconds = 1
	retryAfterNotReadySeconds   = 5
	retryAfterDegradedSeconds   = 30
)

// problem is one application/problem+json answer.
type problem struct {
	code   string
	detail string
	// alternatives, for slot_taken: the nearest free starts.
	alternatives []allocator.Opening
	// retryAfterSeconds, when > 0, is sent as Retry-After.
	retryAfterSeconds int
	// allow, for method_not_allowed: the Allow header.
	allow string
}

// errNotMapped is the code of an error no sentinel matches: a bug, or a
// store failure; either way a 5xx, never blamed on the client.
const errNotMapped = CodeInternal

// problemOf maps an engine error to a problem. The detail is the error's
// text without the "allocator: …" sentinel prefix, so it says what was
// wrong with this request in the engine's words.
func problemOf(err error) problem {
	for _, sc := range sentinelCodes {
		if errors.Is(err, sc.err) {
			p := problem{code: sc.code, detail: detailOf(err, sc.err)}
			switch sc.code {
			case CodeOverloaded:
				p.retryAfterSeconds = retryAfterOverloadedSeconds
			case CodeDegraded:
				p.retryAfterSeconds = retryAfterDegradedSeconds
			}
			return p
		}
	}
	return problem{code: errNotMapped, detail: "the server failed to process the request; it has been logged"}
}

// detailOf strips the sentinel's own text from err's message.
func detailOf(err, sentinel error) string {
	msg := err.Error()
	s := sentinel.Error()
	switch {
	case msg == s:
		return strings.TrimPrefix(s, "allocator: ")
	case strings.HasPrefix(msg, s+": "):
		return strings.TrimPrefix(s, "allocator: ") + ": " + strings.TrimPrefix(msg, s+": ")
	}
	return strings.ReplaceAll(msg, "allocator: ", "")
}

// appendProblem renders p as problem+json.
func appendProblem(b []byte, p *problem) []byte {
	info, ok := codes[p.code]
	if !ok {
		panic("BUG: httpapi: unknown problem code " + p.code)
	}
	b = append(b, `{"type":`...)
	b = appendString(b, problemTypePrefix+p.code)
	b = append(b, `,"title":`...)
	b = appendString(b, info.title)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(info.status), 10)
	b = append(b, `,"detail":`...)
	detail := p.detail
	if detail == "" {
		detail = info.title
	}
	b = appendString(b, detail)
	b = append(b, `,"code":`...)
	b = appendString(b, p.code)
	if p.code == CodeSlotTaken {
		b = append(b, `,"alternatives":`...)
		b = appendOpenings(b, p.alternatives)
	}
	return append(b, '}')
}
