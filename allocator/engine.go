package allocator

import (
	"crypto/rand"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Engine is the in-memory allocator. Safe for concurrent use.
//
// Offices are shards: each has its own days and gate (timer wheels are
// shared by a fixed number of offices each), and no
// operation takes a lock that spans offices (a reschedule across offices
// takes the two gates in id order).
//
// Lock order, outermost first: office.cfgMu → office.gate (several in id
// order) → booking lock bit → applicant shard mutex → index shard mutex.
type Engine struct {
	journal Journal

	officesMu sync.Mutex // serialises office creation (copy-on-write of offices)
	offices   atomic.Pointer[map[string]*office]

	index   *bookingIndex
	apps    *applicants
	watches watchList

	// degraded is set once, by Degrade: a Commit failed, or the edge found
	// a store that shares the journal's disk failing. From then on every
	// state change is refused with ErrDegraded, because the disk state is
	// unknown. degradedCause is the first cause.
	degraded      atomic.Bool
	degradedMu    sync.Mutex
	degradedCause error // guarded by degradedMu
	// journalDegraded is the journal's own Degraded, if it has one
	// (SelfDegradingJournal); nil otherwise. Set by New.
	journalDegraded func() bool

	// fixedLotterySeed, when set, makes lottery draws reproducible (tests).
	fixedLotterySeed []byte
	// idTag is Config.IDTag.
	idTag byte
	// ledger is Config.Ledger, nil for none.
	ledger ApplicantLedger

	wheels [wheelShards]*wheel // offices hashed onto them (wheel.go)

	tickMu   sync.Mutex   // one Tick at a time
	dueBuf   []dueTimer   // a Tick's due timers; guarded by tickMu
	entryBuf []timerEntry // one wheel's due entries; guarded by tickMu
	counter  Counters
}

// Config configures an Engine.
type Config struct {
	// Journal persists every change before it is acknowledged. Required.
	Journal Journal
	// LotterySeed, when set, seeds every release lottery draw so that its
	// order can be reproduced (tests). Nil: a fresh secret seed per draw.
	LotterySeed []byte
	// IDTag, when not zero, is the first byte of every booking and watch
	// id the engine makes, the other 120 bits random: a cluster's edge
	// reads a booking's Raft group off its id (package replica).
	IDTag byte
	// Ledger, when set, keeps applicants' active bookings beyond this
	// engine (a cluster's other groups): the engine reserves a token there
	// before each new booking and releases it after each end. Nil: the
	// engine's own applicant table is the whole rule (a single node).
	Ledger ApplicantLedger
}

// ApplicantLedger keeps the active bookings of applicants across engines,
// so that max_active_per_applicant and the duplicate rule hold over all
// of them. The engine's own applicant table still checks first; the
// ledger is asked only about what that table let through. Implementations
// must be safe for concurrent use; the engine calls them with an office's
// gate held for reading, so they must return within a bounded time.
//
//	G1. Every path that makes an active booking (a hold, a lottery win,
//	    a watch's auto hold) reserves the booking's token, under the id
//	    the booking will have and the time it is created at, after it
//	    claimed the seat in memory and before it commits; a refusal
//	    gives the seat back. After the claim, not before: in a rush most
//	    holds lose their seat to another or find none, and a token
//	    reserved first would cost each of them a reservation and a
//	    release (two commits of the home group) for nothing; the seat
//	    is hidden from other claimers only while the reservation runs,
//	    as it is while the commit runs.
//	G2. A commit that fails does not release the token: its change may
//	    still be committed (a cluster's log decides after the proposer
//	    gave up), and the ledger's owner settles such tokens against
//	    the store.
//	G3. Every end of an active booking (cancel, expiry, rejection,
//	    no-show, completion, closure) releases its token after its
//	    commit, outside the booking's lock. A reschedule keeps the
//	    booking and its service: no token moves.
type ApplicantLedger interface {
	// Reserve records booking id of applicant, for service, created at
	// createdUnixNano, as active, unless the applicant already holds
	// limit active bookings (an error wrapping ErrLimitReached) or one of
	// service (ErrDuplicateBooking). Any other error refuses the booking
	// too (ErrLedgerUnavailable when the ledger cannot be reached).
	Reserve(applicant string, id ID, service string, createdUnixNano int64, limit int) error
	// Release ends the token of booking id. A release the ledger cannot
	// make now is its own to make later.
	Release(applicant string, id ID)
}

// New returns an empty engine.
func New(cfg Config) (*Engine, error) {
	if cfg.Journal == nil {
		return nil, fmt.Errorf("%w: allocator: Config.Journal is required (use &MemJournal{} for no durability)", ErrValidation)
	}
	e := &Engine{journal: cfg.Journal, index: newBookingIndex(), apps: newApplicants(), fixedLotterySeed: cfg.LotterySeed, idTag: cfg.IDTag, ledger: cfg.Ledger}
	if j, ok := cfg.Journal.(SelfDegradingJournal); ok {
		e.journalDegraded = j.Degraded
	}
	for i := range e.wheels {
		e.wheels[i] = newWheel()
	}
	m := map[string]*office{}
	e.offices.Store(&m)
	return e, nil
}

// SelfDegradingJournal is a Journal that can stop writing on its own,
// after a failure outside Commit (a write of its own upkeep). The engine
// counts such a journal's degraded state as its own, so that every store
// failure shows as one degraded state.
type SelfDegradingJournal interface {
	Journal
	// Degraded reports whether the journal refuses further commits.
	Degraded() bool
}

// Degraded reports whether a storage failure stopped all writes: a failed
// commit, a failure the edge reported through Degrade, or the journal's
// own (SelfDegradingJournal). It stays true until the process restarts.
func (e *Engine) Degraded() bool {
	return e.degraded.Load() || (e.journalDegraded != nil && e.journalDegraded())
}

// Degrade stops all writes after a storage failure the engine did not see
// itself: the edge calls it when a store that shares the journal's disk
// (idempotency records, the event feed) fails. cause is kept if it is the
// first. Safe for concurrent use; later calls change nothing.
func (e *Engine) Degrade(cause error) {
	e.degradedMu.Lock()
	if e.degradedCause == nil {
		e.degradedCause = cause
	}
	e.degradedMu.Unlock()
	e.degraded.Store(true)
}

// DegradedCause returns the failure that degraded the engine, or nil if it
// is not degraded.
func (e *Engine) DegradedCause() error {
	if !e.Degraded() {
		return nil
	}
	e.degradedMu.Lock()
	defer e.degradedMu.Unlock()
	if e.degradedCause == nil { // the journal stopped on its own; it logged why
		return fmt.Errorf("%w: the journal stopped writing", ErrDegraded)
	}
	return e.degradedCause
}

// office is one shard. Safe for concurrent use.
type office struct {
	id string
	// cfgMu serialises administrative changes (config, release, closure)
	// and their commits.
	cfgMu sync.Mutex
	// gate: seat changes (claims, frees) hold it for reading from the claim
	// to the publish; closures and layout changes hold it for writing, so
	// they never see a claim or a free half done.
	gate sync.RWMutex
	lay  atomic.Pointer[layout]
	// releasedThrough is the last released date; written under cfgMu.
	releasedThrough atomic.Int32
	daysMu          sync.Mutex                    // serialises day creation
	days            atomic.Pointer[map[Date]*day] // copy-on-write
	wheel           *wheel                        // shared with the other offices hashed onto it
	// lottery is the open release lottery, if any (lottery.go).
	lottery atomic.Pointer[lottery]
	// agenda lists the office's bookings by date (agenda.go).
	agenda agenda
}

func (e *Engine) office(id string) (*office, error) {
	if o := (*e.offices.Load())[id]; o != nil {
		return o, nil
	}
	return nil, fmt.Errorf("%w: office %q", ErrOfficeNotFound, id)
}

// day returns the day of o at date, creating it from the layout.
func (o *office) day(l *layout, date Date) *day {
	if d := (*o.days.Load())[date]; d != nil {
		return d
	}
	o.daysMu.Lock()
	defer o.daysMu.Unlock()
	old := *o.days.Load()
	if d := old[date]; d != nil {
		return d
	}
	d := newDay(l, date)
	m := make(map[Date]*day, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[date] = d
	o.days.Store(&m)
	return d
}

// today returns the office-local date of now.
func (l *layout) today(now time.Time) Date { return DateOf(now.In(l.loc)) }

// autoReleased is the released_through the daily schedule gives at now:
// today + horizon_days once today's release has happened (at
// wallInstant(today, release_time)), one day less before.
func (l *layout) autoReleased(now time.Time) Date {
	lt := now.In(l.loc)
	today := DateOf(lt)
	d := today + Date(l.policy.horizonDays)
	if lt.Hour()*60+lt.Minute() >= l.releaseMin {
		return d // the clock reads the release minute or later: it has passed
	}
	// The clock reads earlier. Today's release is still to come, unless
	// the clocks went back since it and read those minutes again: only
	// possible with a clock change in the last day, which the zone's
	// current span of offset tells without building today's clock.
	if start, _ := lt.ZoneBounds(); start.IsZero() || now.Sub(start) > dayMinutesMax*time.Minute ||
		now.Before(l.wallInstant(today, l.releaseMin)) {
		d--
	}
	return d
}

// lockBit in booking.state marks a transition in flight.
const lockBit = 1 << 8

// booking is the live form of a booking. Readers load rec, the last durable
// state, without locks. Writers first win the lock bit of state by CAS (the
// lifecycle invariant L1 below), so at most one transition is in flight.
//
// It is 16 bytes, one per booking in memory: the seat's day is not kept
// but found from the record (seatDay), which names the office and date.
type booking struct {
	state atomic.Uint32 // Status | lockBit
	rec   atomic.Pointer[BookingRecord]
}

// seatDay returns the day of an active booking's seat at o, rec being its
// record at o. The day exists (the seat is claimed in it) and keeps the
// seat's steps: a layout change that would move them is refused while
// the booking is active, and a reopened date's new day takes the seats of
// the bookings still active on it (replaceDay). A terminal booking's
// date may have no day, or one of another layout: callers ask only for
// active ones.
func (o *office) seatDay(l *layout, rec *BookingRecord) *day { return o.day(l, rec.Date) }

// seatStart returns the start of an active booking's seat at o.
func (o *office) seatStart(l *layout, rec *BookingRecord) time.Time {
	return o.seatDay(l, rec).clock.at(int(rec.Step))
}

// Lifecycle invariants ("lifecycle invariant N" in tests):
//
//	L1. A status change first CASes the state word from (s) to (s|lockBit).
//	    Of racing confirm, cancel, expiry and reschedule exactly one wins the
//	    CAS; the others wait and then decide against the new status, so the
//	    outcome is that of some serial order.
//	L2. rec only ever holds a committed record: it is stored after Commit
//	    returned nil and before the lock bit is cleared.
//	L3. The seat of a booking leaving an active status is freed after its
//	    record is durable and before the lock bit is cleared (invariant 3).

// lock waits for the lock bit and takes it.
func (b *booking) lock() {
	for spins := 0; ; spins++ {
		s := b.state.Load()
		if s&lockBit == 0 && b.state.CompareAndSwap(s, s|lockBit) {
			return
		}
		if spins < 64 {
			runtime.Gosched()
		} else {
			time.Sleep(20 * time.Microsecond)
		}
	}
}

// tryLock takes the lock bit if it is free.
func (b *booking) tryLock() bool {
	s := b.state.Load()
	return s&lockBit == 0 && b.state.CompareAndSwap(s, s|lockBit)
}

// unlock publishes status s and clears the lock bit.
func (b *booking) unlock(s Status) { b.state.Store(uint32(s)) }

// Booking is the view of a booking the API returns: the record plus the
// values derived from the office (number, times).
type Booking struct {
	BookingRecord
	Number        string
	Start, End    time.Time
	HoldExpiresAt time.Time // zero unless held
}

// View renders rec with its office's zone and grid. It returns false when
// the office is unknown.
func (e *Engine) View(rec *BookingRecord) (Booking, bool) {
	o, err := e.office(rec.Office)
	if err != nil {
		return Booking{BookingRecord: *rec}, false
	}
	c := o.clock(o.lay.Load(), rec.Date)
	return viewOf(&c, rec), true
}

// viewOf renders rec with c, the clock of its date.
func viewOf(c *dayClock, rec *BookingRecord) Booking {
	v := Booking{
		BookingRecord: *rec,
		Number:        bookingNumber(rec.Office, rec.Date, rec.Seq),
	}
	// A run past the day's steps is only an archived booking's after its
	// office changed the grid under it: it keeps no times then.
	if s := int(rec.Step); c.table == nil || s+int(rec.Slots) <= int(c.n) {
		v.Start, v.End = c.at(s), c.end(s, int(rec.Slots))
	}
	if rec.HoldExpiresUnixNano != 0 {
		v.HoldExpiresAt = time.Unix(0, rec.HoldExpiresUnixNano).In(c.loc)
	}
	return v
}

func bookingNumber(office string, d Date, seq uint32) string {
	b := make([]byte, 0, len(office)+1+8+1+10)
	for i := 0; i < len(office); i++ {
		c := office[i]
		if c >= 0x80 { // not ASCII: let strings.ToUpper decide
			b = append(b[:0], strings.ToUpper(office)...)
			break
		}
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		b = append(b, c)
	}
	b = append(b, '-')
	b = d.appendCompact(b)
	b = append(b, '-')
	for p := uint32(1000); p > 1 && seq < p; p /= 10 { // at least four digits
		b = append(b, '0')
	}
	return string(strconv.AppendUint(b, uint64(seq), 10))
}

func newID() ID {
	var id ID
	if _, err := rand.Read(id[:]); err != nil {
		panic("BUG: allocator: crypto/rand failed: " + err.Error())
	}
	return id
}

// newID returns a new random id, with the engine's tag first if it has
// one (Config.IDTag).
func (e *Engine) newID() ID {
	id := newID()
	if e.idTag != 0 {
		id[0] = e.idTag
	}
	return id
}

// commit hands c to the journal and marks the engine degraded on failure.
func (e *Engine) commit(c *Change, meta Meta) error {
	if invariantsEnabled {
		for _, r := range c.Bookings {
			if err := r.Check(); err != nil {
				panic("BUG: allocator: committing a bad record: " + err.Error())
			}
		}
	}
	if meta.Attach != nil {
		meta.Attach(c)
	}
	if err := e.journal.Commit(c); err != nil {
		err = fmt.Errorf("cannot persist change: %w", err)
		e.Degrade(err)
		e.counter.CommitErrors.Add(1)
		return err
	}
	return nil
}

// writable refuses a change when the engine is degraded, or when meta's
// texts exceed the limits every journal accepts (Meta.check): checked
// first, before anything is claimed.
func (e *Engine) writable(meta *Meta) error {
	if e.Degraded() {
		return ErrDegraded
	}
	return meta.check()
}
