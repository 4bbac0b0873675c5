package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"slotd/client"
)

// The mixed load: a constant arrival rate of operations drawn by the Mix
// weights — availability reads, holds by new applicants, and confirms,
// cancels and reschedules of bookings this run created. A booking is taken
// out of its pool while an operation on it is in flight, so no booking
// sees two changes at once; an operation with nothing to act on becomes a
// hold (confirm, cancel) or a read (reschedule). Outcomes count operations,
// not applicants.

// mixed is the state of a mixed run. The pools are shared between the
// arrival Targeter (workers) and the handler; mu guards them.
type mixed struct {
	e     *engine
	today string
	to    string
	loc   *time.Location

	mu        sync.Mutex
	rng       *rand.Rand
	held      []int       // applicants whose booking is held
	confirmed []int       // applicants whose booking is confirmed
	dates     []string    // dates seen with free seats
	starts    []time.Time // starts seen free, newest last
	ops       [stepsCount]int
}

// Pool bounds: what the run remembers of the server's availability.
const (
	mixedDatesMax  = 64
	mixedStartsMax = 512
)

func runMixed(ctx context.Context, e *engine, admin *apiClient) (string, error) {
	cfg := e.cfg
	loc := time.UTC
	if admin != nil {
		if info, err := admin.office(ctx, cfg.Office); err == nil {
			if l, err := time.LoadLocation(info.Timezone); err == nil {
				loc = l
			}
		}
	}
	m := &mixed{e: e, loc: loc, rng: rand.New(rand.NewPCG(e.rng.Uint64(), 2))}
	m.today = time.Now().In(loc).Format(time.DateOnly)
	m.to = addDays(m.today, 60)
	e.arrive = m.arrive
	e.react = m.react
	hitsMax := uint64(cfg.Applicants)
	pacer, err := NewProfilePacer(flatProfile(cfg.RatePerSecond, cfg.Duration), hitsMax)
	if err != nil {
		return "", err
	}
	note := fmt.Sprintf("mixed %+v at %.0f/s for %s", cfg.Mix, cfg.RatePerSecond, cfg.Duration)
	e.logf("%s", note)
	e.attack(ctx, vegeta.Pacer(pacer), cfg.Duration)
	return note, nil
}

// pop removes a random element of *pool; -1 when empty.
func (m *mixed) pop(pool *[]int) int {
	p := *pool
	if len(p) == 0 {
		return -1
	}
	i := m.rng.IntN(len(p))
	v := p[i]
	p[i] = p[len(p)-1]
	*pool = p[:len(p)-1]
	return v
}

func (m *mixed) put(pool *[]int, idx int) {
	m.mu.Lock()
	*pool = append(*pool, idx)
	m.mu.Unlock()
}

// arrive draws the next operation.
func (m *mixed) arrive() request {
	e := m.e
	mix := e.cfg.Mix
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.rng.IntN(mix.total())
	var want step
	switch {
	case n < mix.Read:
		want = stepDays
	case n < mix.Read+mix.Hold:
		want = stepHold
	case n < mix.Read+mix.Hold+mix.Confirm:
		want = stepConfirm
	case n < mix.Read+mix.Hold+mix.Confirm+mix.Cancel:
		want = stepCancel
	default:
		want = stepReschedule
	}
	switch want {
	case stepConfirm:
		if idx := m.pop(&m.held); idx >= 0 {
			a := e.applicant(idx)
			return m.last(a, e.confirmRequest(a, e.createdID(a)))
		}
		want = stepHold
	case stepCancel:
		idx := m.pop(&m.confirmed)
		if idx < 0 {
			idx = m.pop(&m.held)
		}
		if idx >= 0 {
			a := e.applicant(idx)
			return m.last(a, e.cancelRequest(a, e.createdID(a), "plans changed"))
		}
		want = stepHold
	case stepReschedule:
		if len(m.starts) > 0 {
			if idx := m.pop(&m.confirmed); idx >= 0 {
				a := e.applicant(idx)
				start := m.starts[m.rng.IntN(len(m.starts))]
				return m.last(a, e.rescheduleRequest(a, e.createdID(a), start))
			}
		}
		want = stepDays
	}
	a := e.newApplicant()
	if want == stepHold {
		if len(m.starts) > 0 && m.rng.IntN(2) == 0 {
			return m.last(a, e.holdRequest(a, e.cfg.Office, m.starts[m.rng.IntN(len(m.starts))], time.Time{}))
		}
		// From now, to the second as the API writes times.
		return m.last(a, e.holdRequest(a, e.cfg.Office, time.Time{}, time.Now().In(m.loc).Truncate(time.Second)))
	}
	if len(m.dates) > 0 && m.rng.IntN(2) == 0 {
		return m.last(a, e.slotsRequest(a, e.cfg.Office, m.dates[m.rng.IntN(len(m.dates))]))
	}
	return m.last(a, e.daysRequest(a, m.today, m.to))
}

func (m *mixed) last(a *applicant, r request) request {
	a.last = r
	m.ops[r.step]++
	return r
}

func (m *mixed) react(a *applicant, _ request, r *vegeta.Result, c Class, _ client.Problem) {
	e := m.e
	s := a.last.step
	if c != ClassOK {
		e.stats.outcomes[outcomeOf(c)]++
		switch {
		case c == ClassError && s == stepConfirm:
			e.unansweredChange(a, client.Confirmed)
		case c == ClassError && s == stepCancel:
			e.unansweredChange(a, client.Cancelled)
		case s == stepConfirm:
			m.put(&m.held, a.idx) // still held: another try may come
		case s == stepReschedule:
			m.put(&m.confirmed, a.idx) // the old seat stays
		}
		return
	}
	switch s {
	case stepDays:
		var out client.ListDays200JSONResponseBody
		_ = json.Unmarshal(r.Body, &out)
		m.mu.Lock()
		m.dates = m.dates[:0]
		for _, d := range out.Days {
			if d.Free > 0 && len(m.dates) < mixedDatesMax {
				m.dates = append(m.dates, d.Date.String())
			}
		}
		m.mu.Unlock()
		e.stats.outcomes[OutcomeBrowsed]++
	case stepSlots:
		free, _ := freeStarts(r.Body, nil)
		m.mu.Lock()
		m.starts = append(m.starts, free...)
		if n := len(m.starts); n > mixedStartsMax {
			m.starts = append(m.starts[:0], m.starts[n-mixedStartsMax:]...)
		}
		m.mu.Unlock()
		e.stats.outcomes[OutcomeBrowsed]++
	case stepHold:
		b := e.recordAnswer(a, r, client.Held)
		e.stats.outcomes[OutcomeHeld]++
		if b.Status == client.Confirmed {
			m.put(&m.confirmed, a.idx)
		} else {
			m.put(&m.held, a.idx)
		}
	case stepConfirm, stepReschedule:
		e.recordAnswer(a, r, client.Confirmed)
		if s == stepConfirm {
			e.stats.outcomes[OutcomeBooked]++
		}
		m.put(&m.confirmed, a.idx)
	case stepCancel:
		e.recordAnswer(a, r, client.Cancelled)
		e.stats.outcomes[OutcomeCancelled]++
	}
}
