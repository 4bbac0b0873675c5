package httpapi

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"slotd/allocator"
	"slotd/api"
)

// codes maps every error code of the API to its status and title
// (package api spells them; TestCodesComplete and TestOpenAPICodes hold the
// edge and docs/openapi.yaml to the same set).
var codes = api.Codes

// sentinelCodes maps allocator sentinels to codes, checked in order with
// errors.Is.
var sentinelCodes = []struct {
	err  error
	code string
}{
	{allocator.ErrOfficeNotFound, api.CodeNotFound},
	{allocator.ErrServiceNotFound, api.CodeNotFound},
	{allocator.ErrBookingNotFound, api.CodeNotFound},
	{allocator.ErrWatchNotFound, api.CodeNotFound},
	{allocator.ErrSlotTaken, api.CodeSlotTaken},
	{allocator.ErrInvalidTransition, api.CodeInvalidTransition},
	{allocator.ErrDuplicateBooking, api.CodeDuplicateBooking},
	{allocator.ErrNotReleased, api.CodeNotReleased},
	{allocator.ErrTooLateToCancel, api.CodeTooLateToCancel},
	{allocator.ErrTooLateToReschedule, api.CodeTooLateToReschedule},
	{allocator.ErrNotReschedulable, api.CodeNotReschedulable},
	{allocator.ErrRescheduleLimit, api.CodeRescheduleLimit},
	{allocator.ErrHistoryLimit, api.CodeHistoryLimit},
	{allocator.ErrLimitReached, api.CodeLimitReached},
	{allocator.ErrApplicantBlocked, api.CodeApplicantBlocked},
	{allocator.ErrCancelNotOnline, api.CodeCancelNotOnline},
	{allocator.ErrLayoutInUse, api.CodeLayoutInUse},
	{allocator.ErrOverloaded, api.CodeOverloaded},
	{allocator.ErrDegraded, api.CodeDegraded},
	{allocator.ErrLedgerUnavailable, api.CodeNoLeader},
	{allocator.ErrValidation, api.CodeValidationFailed},
}

// Retry-After values, in seconds, of the refusals that carry one.
const (
	retryAfterOverloadedSeconds = 1
	retryAfterNotReadySeconds   = 5
	retryAfterDegradedSeconds   = 30
	// A cluster's group elects a leader in about a second.
	retryAfterNoLeaderSeconds = 1
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
	// blockedUntil, for applicant_blocked: the end of the block, in the
	// office's zone (allocator.BlockedError).
	blockedUntil time.Time
}

// errNotMapped is the code of an error no sentinel matches: a bug, or a
// store failure; either way a 5xx, never blamed on the client.
const errNotMapped = api.CodeInternal

// problemOf maps an engine error to a problem. The detail is the error's
// text without the "allocator: …" sentinel prefix, so it says what was
// wrong with this request in the engine's words.
func problemOf(err error) problem {
	for _, sc := range sentinelCodes {
		if errors.Is(err, sc.err) {
			p := problem{code: sc.code, detail: detailOf(err, sc.err)}
			switch sc.code {
			case api.CodeOverloaded:
				p.retryAfterSeconds = retryAfterOverloadedSeconds
			case api.CodeDegraded:
				p.retryAfterSeconds = retryAfterDegradedSeconds
			case api.CodeNoLeader:
				p.retryAfterSeconds = retryAfterNoLeaderSeconds
			case api.CodeApplicantBlocked:
				var be *allocator.BlockedError
				if errors.As(err, &be) {
					p.blockedUntil = be.Until
				}
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
	b = appendString(b, api.ProblemTypePrefix+p.code)
	b = append(b, `,"title":`...)
	b = appendString(b, info.Title)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(info.Status), 10)
	b = append(b, `,"detail":`...)
	detail := p.detail
	if detail == "" {
		detail = info.Title
	}
	b = appendString(b, detail)
	b = append(b, `,"code":`...)
	b = appendString(b, p.code)
	if p.code == api.CodeSlotTaken {
		b = append(b, `,"alternatives":`...)
		b = appendOpenings(b, p.alternatives)
	}
	if p.code == api.CodeApplicantBlocked && !p.blockedUntil.IsZero() {
		b = append(b, `,"blocked_until":"`...)
		b = p.blockedUntil.AppendFormat(b, time.RFC3339)
		b = append(b, '"')
	}
	return append(b, '}')
}

// WriteProblem answers ctx with the problem+json of code (one of package
// api's), detail, and Retry-After when retryAfterSeconds > 0: for a front
// that answers before any Server does (a cluster node's).
func WriteProblem(ctx *fasthttp.RequestCtx, code, detail string, retryAfterSeconds int) {
	p := problem{code: code, detail: detail, retryAfterSeconds: retryAfterSeconds}
	ctx.SetStatusCode(codes[code].Status)
	ctx.SetContentType(contentProblem)
	if retryAfterSeconds > 0 {
		ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, strconv.Itoa(retryAfterSeconds))
	}
	ctx.SetBody(appendProblem(nil, &p))
}
