package allocator

import (
	"fmt"
	"slices"
	"time"
)

// PutOffice creates an office or replaces its config. A replacement that
// moves seats (zone, grid, windows, hours), drops a service, changes a
// service's length, or closes a date while active bookings depend on it is
// refused with ErrLayoutInUse: close dates with CloseDate, which cancels
// the affected bookings.
func (e *Engine) PutOffice(now time.Time, cfg OfficeConfig, meta Meta) (created bool, err error) {
	if err := e.writable(&meta); err != nil {
		return false, err
	}
	l, err := compileLayout(cfg)
	if err != nil {
		return false, err
	}
	e.officesMu.Lock()
	o := (*e.offices.Load())[cfg.ID]
	if o == nil {
		defer e.officesMu.Unlock()
		o = e.newOffice(l)
		through := l.autoReleased(now)
		rec := &OfficeRecord{Config: cfg, ReleasedThrough: through}
		if err := e.commit(&Change{Office: rec}, meta); err != nil {
			return false, err
		}
		o.releasedThrough.Store(int32(through))
		e.addOfficeLocked(o)
		return true, nil
	}
	e.officesMu.Unlock()

	o.cfgMu.Lock()
	defer o.cfgMu.Unlock()
	o.gate.Lock()
	defer o.gate.Unlock()
	old := o.lay.Load()
	if err := e.checkReplacementLocked(o, old, l); err != nil {
		return false, err
	}
	rec := &OfficeRecord{Config: cfg, ReleasedThrough: Date(o.releasedThrough.Load())}
	if err := e.commit(&Change{Office: rec}, meta); err != nil {
		return false, err
	}
	o.lay.Store(l)
	if !old.sameSeats(l) {
		m := map[Date]*day{}
		o.days.Store(&m)
		return false, nil
	}
	// Same seats: only closures may differ. Newly closed days (no active
	// bookings, checked above) lose their seats; reopened days are rebuilt.
	days := *o.days.Load()
	for date, d := range days {
		switch {
		case l.closures[date] && !old.closures[date]:
			d.closed.Store(true)
			d.withdraw()
		case !l.closures[date] && old.closures[date]:
			o.replaceDay(l, date)
		}
	}
	return false, nil
}

func (e *Engine) newOffice(l *layout) *office {
	h := uint32(2166136261) // FNV-1a of the id picks the wheel
	for i := 0; i < len(l.cfg.ID); i++ {
		h = (h ^ uint32(l.cfg.ID[i])) * 16777619
	}
	o := &office{id: l.cfg.ID, wheel: e.wheels[h%wheelShards]}
	o.lay.Store(l)
	m := map[Date]*day{}
	o.days.Store(&m)
	return o
}

// addOfficeLocked publishes o. Caller holds e.officesMu.
func (e *Engine) addOfficeLocked(o *office) {
	old := *e.offices.Load()
	m := make(map[string]*office, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[o.id] = o
	e.offices.Store(&m)
}

// replaceDay rebuilds the day at date from the layout: a reopened date.
// The bookings still active on it (checked_in ones, which a closure
// leaves) keep their seats: the new day has them taken, so they are
// neither sold again nor lost when the visit ends (seatDay). Caller holds
// o.gate for writing, so no claim or free of the office is under way.
func (o *office) replaceDay(l *layout, date Date) {
	o.daysMu.Lock()
	defer o.daysMu.Unlock()
	old := *o.days.Load()
	m := make(map[Date]*day, len(old))
	for k, v := range old {
		m[k] = v
	}
	d := newDay(l, date)
	if prev := old[date]; prev != nil {
		d.seq.Store(prev.seq.Load())
	}
	for _, r := range o.agenda.records(o.id, date, func(r *BookingRecord) bool { return r.Status.Active() }) {
		if !d.claim(int(r.Window), int(r.Step), int(r.Slots)) {
			panic("BUG: allocator: two active bookings own a seat of a reopened day")
		}
	}
	m[date] = d
	o.days.Store(&m)
}

// checkReplacementLocked refuses a new layout that would strand active
// bookings. Caller holds o.gate for writing.
func (e *Engine) checkReplacementLocked(o *office, old, l *layout) error {
	sameSeats := old.sameSeats(l)
	var problem error
	e.index.each(func(b *booking) bool {
		r := b.rec.Load()
		if r.Office != o.id || !r.Status.Active() {
			return true
		}
		svc := l.services[r.Service]
		switch {
		case !sameSeats:
			problem = fmt.Errorf("%w: office %s: timezone, slot_minutes, windows or hours cannot change while active bookings exist (first: %s on %s)", ErrLayoutInUse, o.id, bookingNumber(r.Office, r.Date, r.Seq), r.Date)
		case svc == nil:
			problem = fmt.Errorf("%w: office %s: service %q has active bookings and cannot be removed", ErrLayoutInUse, o.id, r.Service)
		case svc.slots != int(r.Slots):
			problem = fmt.Errorf("%w: office %s: service %q has active bookings and its length cannot change", ErrLayoutInUse, o.id, r.Service)
		case l.closures[r.Date] && !old.closures[r.Date]:
			problem = fmt.Errorf("%w: office %s: %s has active bookings; close it with POST /v1/offices/%s/closures, which cancels them", ErrLayoutInUse, o.id, r.Date, o.id)
		}
		return problem == nil
	})
	return problem
}

// Office returns the config and released_through of an office.
func (e *Engine) Office(id string) (OfficeRecord, error) {
	o, err := e.office(id)
	if err != nil {
		return OfficeRecord{}, err
	}
	return OfficeRecord{Config: o.lay.Load().cfg, ReleasedThrough: Date(o.releasedThrough.Load())}, nil
}

// OfficeIDs returns the ids of all offices, sorted.
func (e *Engine) OfficeIDs() []string {
	m := *e.offices.Load()
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Release moves released_through of an office forward to through (a
// special release) and emits slots.released. A date at or before the
// current released_through changes nothing and returns the current one.
func (e *Engine) Release(now time.Time, officeID string, through Date, meta Meta) (Date, error) {
	if err := e.writable(&meta); err != nil {
		return 0, err
	}
	o, err := e.office(officeID)
	if err != nil {
		return 0, err
	}
	l := o.lay.Load()
	if through > l.today(now)+horizonDaysMax {
		return 0, fmt.Errorf("%w: release through %s is more than %d days ahead", ErrValidation, through, horizonDaysMax)
	}
	o.cfgMu.Lock()
	defer o.cfgMu.Unlock()
	return e.releaseLocked(now, now, o, through, meta)
}

// releaseLocked commits a release. Caller holds o.cfgMu.
// instant is the release minute the lottery window counts from: now for a
// special release, the scheduled minute for the daily one.
func (e *Engine) releaseLocked(now, instant time.Time, o *office, through Date, meta Meta) (Date, error) {
	cur := Date(o.releasedThrough.Load())
	if through <= cur {
		return cur, nil
	}
	c := &Change{
		Office: &OfficeRecord{Config: o.lay.Load().cfg, ReleasedThrough: through},
		Events: []Event{{Type: EventSlotsReleased, AtUnixNano: now.UnixNano(), Office: o.id, Through: through, Reason: meta.Reason}},
	}
	if err := e.commit(c, meta); err != nil {
		return cur, err
	}
	o.releasedThrough.Store(int32(through))
	e.counter.Releases.Add(1)
	e.offerReleased(now, o, cur+1, through)
	e.openLottery(o, o.lay.Load(), cur+1, through, instant)
	return through, nil
}

// CloseDate closes an office on date: its free seats are withdrawn and
// every held, confirmed, awaiting_approval or cancel_requested booking on it is cancelled with
// reason office_closed, all in one durable change. Closing a closed date
// changes nothing.
func (e *Engine) CloseDate(now time.Time, officeID string, date Date, meta Meta) ([]Booking, error) {
	if err := e.writable(&meta); err != nil {
		return nil, err
	}
	o, err := e.office(officeID)
	if err != nil {
		return nil, err
	}
	// The cancelled bookings' tokens are released once the office's locks
	// are let go (G3): deferred first, this runs after their unlocks.
	var cancelled []*BookingRecord
	defer func() {
		for _, r := range cancelled {
			e.releaseToken(r.Applicant, r.ID)
		}
	}()
	o.cfgMu.Lock()
	defer o.cfgMu.Unlock()
	o.gate.Lock()
	defer o.gate.Unlock()
	l := o.lay.Load()
	if l.closures[date] {
		return nil, nil
	}
	if len(l.cfg.Closures) >= closuresMax {
		return nil, fmt.Errorf("%w: office %s already has %d closures", ErrValidation, o.id, closuresMax)
	}
	cfg := l.cfg
	cfg.Closures = append(slices.Clip(cfg.Closures), date.String())
	nl, err := compileLayout(cfg)
	if err != nil {
		return nil, err
	}
	affected := e.lockClosableLocked(o.id, date)
	rec := &OfficeRecord{Config: cfg, ReleasedThrough: Date(o.releasedThrough.Load())}
	c, err := closureChange(now, rec, affected, meta.Actor)
	if err != nil {
		unlockAll(affected)
		return nil, fmt.Errorf("cannot close office %s on %s: %w", o.id, date, err)
	}
	if err := e.commit(c, meta); err != nil {
		unlockAll(affected)
		return nil, err
	}
	o.lay.Store(nl)
	d := o.day(nl, date)
	d.closed.Store(true)
	d.withdraw()
	if e.ledger != nil {
		cancelled = c.Bookings
	}
	return e.cancelClosedLocked(d, affected, c.Bookings), nil
}

// lockClosableLocked locks and returns the bookings of office on date that
// a closure cancels: every active one but a checked_in one (held,
// confirmed, awaiting_approval, cancel_requested). Caller
// holds the office's write gate, so no transition of the office is in
// flight and every such booking's lock is free.
func (e *Engine) lockClosableLocked(office string, date Date) []*booking {
	var affected []*booking
	e.index.each(func(b *booking) bool {
		r := b.rec.Load()
		if r.Office == office && r.Date == date && r.Status.Active() && r.Status != StatusCheckedIn {
			if !b.tryLock() {
				panic("BUG: allocator: booking locked under the office write gate")
			}
			affected = append(affected, b)
		}
		return true
	})
	return affected
}

// unlockAll releases the locks of bs, their statuses unchanged.
func unlockAll(bs []*booking) {
	for _, b := range bs {
		b.unlock(b.rec.Load().Status)
	}
}

// closureChange is the durable change of a closure: the office record and,
// for each affected booking in order, its cancelled record and event. It
// fails if a booking's history has no room for the cancel.
func closureChange(now time.Time, rec *OfficeRecord, affected []*booking, actor string) (*Change, error) {
	c := &Change{Office: rec}
	for _, b := range affected {
		cur := b.rec.Load()
		next := cur.next(now, StatusCancelled, actor, ReasonOfficeClosed)
		if err := checkGrowth(cur, next); err != nil {
			return nil, err
		}
		c.Bookings = append(c.Bookings, next)
		c.Events = append(c.Events, Event{Type: EventCancelled, AtUnixNano: now.UnixNano(), Office: rec.Config.ID, Booking: next, Reason: ReasonOfficeClosed})
	}
	return c, nil
}

// cancelClosedLocked publishes the committed records of the affected
// bookings (next[i] is affected[i]'s), gives back their applicants' places
// and unlocks them. Their seats are not released: the closed day d has
// withdrawn its seats. Caller holds the office's write gate.
func (e *Engine) cancelClosedLocked(d *day, affected []*booking, next []*BookingRecord) []Booking {
	out := make([]Booking, 0, len(affected))
	for i, b := range affected {
		prev := b.rec.Load()
		b.rec.Store(next[i])
		e.apps.unreserve(prev.Applicant, prev.Service)
		e.counter.Transitions[StatusCancelled].Add(1)
		e.counter.moved(prev.Status, StatusCancelled)
		b.unlock(StatusCancelled)
		out = append(out, viewOf(&d.clock, next[i]))
	}
	return out
}

// autoRelease advances released_through on the daily schedule.
func (e *Engine) autoRelease(now time.Time, o *office) error {
	l := o.lay.Load()
	target := l.autoReleased(now)
	if target <= Date(o.releasedThrough.Load()) {
		return nil
	}
	o.cfgMu.Lock()
	defer o.cfgMu.Unlock()
	instant := l.wallInstant(l.today(now), l.releaseMin)
	if instant.After(now) { // before today's release minute: the catch-up of an earlier one
		instant = now
	}
	_, err := e.releaseLocked(now, instant, o, target, Meta{Actor: ActorSystem})
	return err
}
