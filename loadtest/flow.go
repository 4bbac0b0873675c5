package loadtest

import (
	"encoding/json"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"slotd/api"
	"slotd/client"
)

// flow is the applicant's walk shared by rush and peakday:
//
//	[days →] slots → hold → confirm        (booked)
//	                    ╰→ nothing          (abandoned: the hold expires)
//
// slots is polled while the date is not released yet (rush); slot_taken
// is retried on one of the answer's alternatives, then on fresh slots; 429
// and 503 wait out Retry-After; transport errors resend the same request
// with the same Idempotency-Key. Every retry counts against RetriesMax, so
// each applicant sends a bounded number of requests. Handler goroutine
// only, except released.
type flow struct {
	e *engine
	// released is false while the rush date is not released yet; slots
	// answers without free seats are then polled again, not sold out.
	released atomic.Bool
	// pickDate: peakday applicants start at /days and pick a date.
	pickDate bool
}

func (f *flow) react(a *applicant, _ request, r *vegeta.Result, c Class, p client.Problem) {
	e := f.e
	req := a.last
	switch req.step {
	case stepDays:
		f.afterDays(a, r, c)
	case stepSlots:
		f.afterSlots(a, r, c)
	case stepHold:
		f.afterHold(a, r, c, p)
	case stepConfirm:
		switch c {
		case ClassOK:
			f.recordAnswer(a, r, client.Confirmed)
			e.finish(a, OutcomeBooked)
		case ClassError:
			e.unansweredChange(a, client.Confirmed)
			f.failed(a, r, c, p)
		default:
			f.failed(a, r, c, p)
		}
	default:
		panic("BUG: flow: unexpected step " + req.step.String())
	}
}

func (f *flow) afterDays(a *applicant, r *vegeta.Result, c Class) {
	e := f.e
	if c != ClassOK {
		f.failed(a, r, c, client.Problem{})
		return
	}
	if a.polls == 0 {
		a.browse = e.rng.Float64() < e.cfg.BrowseRatio
	}
	var out client.ListDays200JSONResponseBody
	if json.Unmarshal(r.Body, &out) != nil {
		e.finish(a, OutcomeError)
		return
	}
	var open []string
	for _, d := range out.Days {
		if d.Free > 0 && len(open) < 3 {
			open = append(open, d.Date.String())
		}
	}
	if len(open) == 0 {
		e.finish(a, OutcomeSoldOut)
		return
	}
	a.date = open[e.rng.IntN(len(open))]
	e.send(a, e.slotsRequest(a, e.cfg.Office, a.date), 0)
}

func (f *flow) afterSlots(a *applicant, r *vegeta.Result, c Class) {
	e := f.e
	switch c {
	case ClassOK:
	case ClassNotReleased:
		f.poll(a, OutcomeNotReleased)
		return
	default:
		f.failed(a, r, c, client.Problem{})
		return
	}
	free, err := freeStarts(r.Body, nil)
	if err != nil {
		e.finish(a, OutcomeError)
		return
	}
	switch {
	case len(free) == 0 && !f.released.Load():
		f.poll(a, OutcomeNotReleased)
	case len(free) == 0:
		e.finish(a, OutcomeSoldOut)
	case a.browse:
		e.finish(a, OutcomeBrowsed)
	default:
		// People pick a start they like; uniform over the free ones.
		e.send(a, e.holdRequest(a, e.cfg.Office, free[e.rng.IntN(len(free))], time.Time{}), 0)
	}
}

// freeStarts appends to dst the starts with a free seat in an
// availability answer (GET /v1/offices/{office}/days/{date}/slots).
func freeStarts(body []byte, dst []time.Time) ([]time.Time, error) {
	var out client.ListSlots200JSONResponseBody
	if err := json.Unmarshal(body, &out); err != nil {
		return dst, err
	}
	for _, s := range out.Slots {
		if s.Free > 0 {
			dst = append(dst, s.Start)
		}
	}
	return dst, nil
}

// poll refreshes availability after the poll interval, or gives up.
func (f *flow) poll(a *applicant, giveUp Outcome) {
	e := f.e
	if a.polls >= e.cfg.PollsMax {
		e.finish(a, giveUp)
		return
	}
	a.polls++
	e.send(a, a.last, e.jitter(e.cfg.PollInterval))
}

func (f *flow) afterHold(a *applicant, r *vegeta.Result, c Class, p client.Problem) {
	e := f.e
	switch c {
	case ClassOK:
		b := f.recordAnswer(a, r, client.Held)
		switch {
		case b.Status == client.Confirmed:
			e.finish(a, OutcomeBooked)
		case e.rng.Float64() < e.cfg.GiveUpRatio:
			e.finish(a, OutcomeAbandoned)
		default:
			// The applicant types the code from the SMS.
			think := time.Duration(e.rng.Int64N(int64(e.cfg.ConfirmThinkMax) + 1))
			e.send(a, e.confirmRequest(a, b.Id), think)
		}
	case ClassSlotTaken:
		if a.retries >= e.cfg.RetriesMax {
			e.finish(a, OutcomeSlotTaken)
			return
		}
		a.retries++
		var alts []client.Opening
		if p.Alternatives != nil {
			alts = *p.Alternatives
		}
		if n := min(len(alts), 3); n > 0 {
			alt := alts[e.rng.IntN(n)]
			office := alt.Office
			if office == "" {
				office = e.cfg.Office
			}
			e.send(a, e.holdRequest(a, office, alt.Start, time.Time{}), 0)
			return
		}
		if a.date == "" {
			e.finish(a, OutcomeSlotTaken)
			return
		}
		e.send(a, e.slotsRequest(a, e.cfg.Office, a.date), 0)
	default:
		f.failed(a, r, c, p)
	}
}

// failed handles an answer that is not what the step wanted: what may pass
// on a retry is retried (bounded), the rest ends the visit.
func (f *flow) failed(a *applicant, r *vegeta.Result, c Class, p client.Problem) {
	e := f.e
	switch {
	case c == ClassRateLimited, c == ClassShed, c == ClassError, p.Code == api.CodeIdempotencyInFlight:
		if e.retry(a, e.backoff(r)) {
			return
		}
	}
	e.finish(a, outcomeOf(c))
}

// recordAnswer records the booking in a 2xx answer; status is what the
// step implies when the answer does not say.
func (f *flow) recordAnswer(a *applicant, r *vegeta.Result, status client.Status) client.Booking {
	return f.e.recordAnswer(a, r, status)
}
