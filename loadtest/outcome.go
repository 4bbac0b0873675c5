package loadtest

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"slotd/api"
	"slotd/client"
)

// Class is what one answer means to the load test. Every result falls in
// exactly one class.
type Class string

// Classes of answers.
const (
	ClassOK          Class = "ok"           // 2xx
	ClassSlotTaken   Class = "slot_taken"   // 409 slot_taken: lost the race for a seat
	ClassDuplicate   Class = "duplicate"    // 409 duplicate_booking: the applicant already holds one
	ClassNotReleased Class = "not_released" // 422 not_released: the date is not open (yet)
	ClassRateLimited Class = "rate_limited" // 429
	ClassShed        Class = "shed"         // 503 overloaded / not_ready / degraded
	ClassRefused     Class = "refused"      // another 4xx with a code: a policy said no
	ClassError       Class = "error"        // transport error, timeout, 5xx, or an answer without a code
)

// classes lists every Class in report order.
var classes = [...]Class{ClassOK, ClassSlotTaken, ClassDuplicate, ClassNotReleased, ClassRateLimited, ClassShed, ClassRefused, ClassError}

// Classify sorts one result into a Class and returns the problem body, if
// the answer had one.
func Classify(r *vegeta.Result) (Class, client.Problem) {
	var p client.Problem
	switch {
	case r.Code == 0:
		return ClassError, p
	case r.Code >= 200 && r.Code < 300:
		return ClassOK, p
	}
	if err := json.Unmarshal(r.Body, &p); err != nil {
		// A problem whose alternatives or block end do not parse still
		// has its code: read it again with those members left raw (the
		// outer fields hide the embedded problem's of the same name).
		var lax struct {
			client.Problem
			Alternatives json.RawMessage `json:"alternatives"`
			BlockedUntil json.RawMessage `json:"blocked_until"`
		}
		_ = json.Unmarshal(r.Body, &lax)
		p = lax.Problem
	}
	switch {
	case r.Code == http.StatusTooManyRequests || p.Code == api.CodeRateLimited:
		return ClassRateLimited, p
	case p.Code == api.CodeOverloaded || p.Code == api.CodeNotReady || p.Code == api.CodeDegraded:
		return ClassShed, p
	case r.Code == http.StatusServiceUnavailable:
		return ClassShed, p
	case p.Code == api.CodeSlotTaken:
		return ClassSlotTaken, p
	case p.Code == api.CodeDuplicateBooking:
		return ClassDuplicate, p
	case p.Code == api.CodeNotReleased:
		return ClassNotReleased, p
	case r.Code >= 400 && r.Code < 500 && p.Code != "":
		return ClassRefused, p
	}
	return ClassError, p
}

// retryAfter reads Retry-After (seconds or an HTTP date) from a result,
// capped at limit; a missing or bad header gives fallback.
func retryAfter(h http.Header, now time.Time, fallback, limit time.Duration) time.Duration {
	d := fallback
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if s, err := strconv.Atoi(v); err == nil && s >= 0 {
			d = time.Duration(s) * time.Second
		} else if t, err := http.ParseTime(v); err == nil {
			d = max(t.Sub(now), 0)
		}
	}
	return min(d, limit)
}

// Outcome is how an applicant's visit ended. Every applicant of a flow
// scenario ends in exactly one outcome.
type Outcome string

// Outcomes of an applicant.
const (
	OutcomeBooked      Outcome = "booked"       // held and confirmed
	OutcomeAbandoned   Outcome = "abandoned"    // held, then gave up: the hold will expire
	OutcomeHeld        Outcome = "held"         // held and confirmation unanswered (botrush: one-shot holds)
	OutcomeSlotTaken   Outcome = "slot_taken"   // lost every race it tried
	OutcomeSoldOut     Outcome = "sold_out"     // saw no free seat
	OutcomeDuplicate   Outcome = "duplicate"    // refused as a duplicate of its own booking
	OutcomeNotReleased Outcome = "not_released" // the date never opened while it waited
	OutcomeRateLimited Outcome = "rate_limited" // gave up after 429s
	OutcomeShed        Outcome = "shed"         // gave up after 503s
	OutcomeRefused     Outcome = "refused"      // a policy refused it
	OutcomeBrowsed     Outcome = "browsed"      // only looked at availability (peakday)
	OutcomeError       Outcome = "error"        // transport errors or unexpected answers
	OutcomeUnfinished  Outcome = "unfinished"   // still walking when the run stopped
	OutcomeCancelled   Outcome = "cancelled"    // cancelled its booking (mixed)
)

// outcomes lists every Outcome in report order.
var outcomes = [...]Outcome{OutcomeBooked, OutcomeAbandoned, OutcomeHeld, OutcomeSlotTaken, OutcomeSoldOut,
	OutcomeDuplicate, OutcomeNotReleased, OutcomeRateLimited, OutcomeShed, OutcomeRefused, OutcomeBrowsed, OutcomeError, OutcomeUnfinished, OutcomeCancelled}

// outcomeOf is the outcome of an applicant whose last answer had class c
// and who will not retry.
func outcomeOf(c Class) Outcome {
	switch c {
	case ClassSlotTaken:
		return OutcomeSlotTaken
	case ClassDuplicate:
		return OutcomeDuplicate
	case ClassNotReleased:
		return OutcomeNotReleased
	case ClassRateLimited:
		return OutcomeRateLimited
	case ClassShed:
		return OutcomeShed
	case ClassRefused:
		return OutcomeRefused
	case ClassOK:
		panic("BUG: outcomeOf(ok): a 2xx is not a final failure")
	}
	return OutcomeError
}
