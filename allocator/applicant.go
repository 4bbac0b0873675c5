package allocator

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// Applicant rules (DESIGN §1) are kept per applicant across all offices:
// the active count, the services with an active booking (duplicates: a
// service is its id, so the same id at two offices is one service), the
// penalty history and block, and the list of the
// applicant's bookings for "my bookings". The limit that applies is the one
// of the office being booked.
//
// An applicant is in the table only while its state holds something the
// rules need (applicantState.empty): anyone may send a hold with a new id,
// and a table that kept every id that ever tried would grow without bound
// (a bot rotating ids at the edge's rate adds hundreds of MB an hour).
//
//	A1. Every change of an applicant's state is made with its shard's
//	    mutex held, and finds the state by id under that lock; a state is
//	    removed (forgetLocked) under the same lock, only when empty.
//	A2. A reservation counts in active from reserve until unreserve, or
//	    until add puts its booking in the list, which it never leaves. So
//	    the state an applicantRef points to is never empty, hence never
//	    removed, while the ref may still be used (by add); a hold of the
//	    same applicant racing a removal either finds the old state before
//	    it is removed (and then it is not empty) or makes a new one after,
//	    and no count is lost (max_active_per_applicant holds).
//	A3. A booking is added to its applicant's list before it is
//	    published in the index (commitNewBooking): until then no one can
//	    find it to end it, so no unreserve can empty the state under a
//	    ref that add is still to use.

const applicantShards = 256

// applicantState must be accessed with its shard's mutex held.
//
// It is 64 bytes. The active count is not kept but summed from services
// (active): every active booking and reservation counts in exactly one
// service, so the count would say again what the services say, for 8
// bytes an applicant and a size class (80 bytes) of the allocator.
type applicantState struct {
	// services are the services, by number (serviceIDs), with active
	// bookings at any office, and how many each. A slice, not a map: an
	// applicant has a handful at most, and a map per applicant would cost
	// more memory than the booking itself.
	services []serviceCount
	// pen is nil until the applicant's first penalised event: most
	// applicants never have one, and the fields would cost every one.
	pen      *applicantPenalties
	bookings []*booking // archive included, in creation order
	// oneBooking backs bookings until it needs a second element: most
	// applicants hold one booking.
	oneBooking [1]*booking
}

// active returns the applicant's active bookings and reservations.
func (st *applicantState) active() int {
	n := 0
	for _, c := range st.services {
		n += int(c.n)
	}
	return n
}

// empty reports whether st holds nothing the rules need: no active
// booking (nor a reservation), no booking in the list (the archive of "my
// bookings"), and no penalty record. A penalty is only ever recorded for a
// booking in the list, so an applicant with one is never empty anyway.
func (st *applicantState) empty() bool {
	return len(st.services) == 0 && len(st.bookings) == 0 && st.pen == nil
}

// newApplicantState returns an empty state whose first booking needs no
// allocation.
func newApplicantState() *applicantState {
	st := &applicantState{}
	st.bookings = st.oneBooking[:0]
	return st
}

// applicantPenalties: the times of penalised events (applicant cancels of
// confirmed bookings, no-shows), oldest first, trimmed to the window, and
// the end of the current block.
type applicantPenalties struct {
	atUnixNano           []int64
	blockedUntilUnixNano int64
}

// blockedUntil returns the end of the applicant's block, 0 if none.
func (st *applicantState) blockedUntil() int64 {
	if st.pen == nil {
		return 0
	}
	return st.pen.blockedUntilUnixNano
}

// serviceCount is an applicant's count of active bookings of one service
// across all offices, the service by its number (serviceIDs): 8 bytes,
// where the string took 16.
type serviceCount struct {
	pair uint32
	n    int32
}

// count returns the active bookings of pair.
func (st *applicantState) count(pair uint32) int {
	for _, c := range st.services {
		if c.pair == pair {
			return int(c.n)
		}
	}
	return 0
}

// addService adds delta to the count of pair, dropping it at 0.
func (st *applicantState) addService(pair uint32, delta int) {
	for i := range st.services {
		if c := &st.services[i]; c.pair == pair {
			if c.n += int32(delta); c.n <= 0 {
				st.services = append(st.services[:i], st.services[i+1:]...)
			}
			return
		}
	}
	if delta > 0 {
		st.services = append(st.services, serviceCount{pair, int32(delta)})
	}
}

// serviceIDs numbers service ids for serviceCount. A service is its id
// across offices (DESIGN §1), so the number does not depend on the office.
// Numbers are never reused; there are at most as many as service ids ever
// configured. Safe for concurrent use.
type serviceIDs struct {
	ids  sync.Map // service id → uint32
	next atomic.Uint32
}

// id returns the number of service, giving it one on first use.
func (p *serviceIDs) id(service string) uint32 {
	if v, ok := p.ids.Load(service); ok {
		return v.(uint32)
	}
	v, _ := p.ids.LoadOrStore(service, p.next.Add(1))
	return v.(uint32)
}

type applicantShard struct {
	mu sync.Mutex
	m  map[string]*applicantState
	_  [40]byte
}

// applicants is the sharded applicant table. Safe for concurrent use.
type applicants struct {
	seed     maphash.Seed
	services serviceIDs
	shards   [applicantShards]applicantShard
}

func newApplicants() *applicants {
	a := &applicants{seed: maphash.MakeSeed()}
	for i := range a.shards {
		a.shards[i].m = make(map[string]*applicantState)
	}
	return a
}

func (a *applicants) shard(id string) *applicantShard {
	return &a.shards[maphash.String(a.seed, id)%applicantShards]
}

// stateLocked returns the state of id, creating it. Caller holds sh.mu.
func (sh *applicantShard) stateLocked(id string) *applicantState {
	st := sh.m[id]
	if st == nil {
		st = newApplicantState()
		sh.m[id] = st
	}
	return st
}

// forgetLocked removes st, the state of id, from the table when it is
// empty (A1). Caller holds sh.mu.
func (sh *applicantShard) forgetLocked(id string, st *applicantState) {
	if !st.empty() {
		return
	}
	if invariantsEnabled && len(st.services) != 0 {
		panic("BUG: allocator: applicant without active bookings counts an active service")
	}
	delete(sh.m, id)
}

// applicantRef is an applicant's entry as reserve found it. The state
// stays in its shard while the ref may be used (A2), so the booking
// reserve made room for is added through it (add) without hashing the id
// and searching again.
type applicantRef struct {
	sh *applicantShard
	st *applicantState // guarded by sh.mu
}

// reserve checks the block, the active limit and duplicates (an active
// booking of svc at any office), and counts one more active booking of
// svc. Undo with unreserve.
func (a *applicants) reserve(id, svc string, l *layout, now time.Time) (applicantRef, error) {
	p := &l.policy
	pair := a.services.id(svc)
	sh := a.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.stateLocked(id)
	var err error
	switch {
	case st.blockedUntil() > now.UnixNano():
		err = &BlockedError{Until: time.Unix(0, st.blockedUntil()).In(l.loc)}
	case st.count(pair) > 0:
		err = ErrDuplicateBooking
	case st.active() >= p.maxActivePerApplicant:
		err = ErrLimitReached
	}
	if err != nil {
		sh.forgetLocked(id, st) // a state made for this call only
		return applicantRef{}, err
	}
	st.addService(pair, 1)
	return applicantRef{sh, st}, nil
}

// add records b, the booking reserve counted, in the applicant's list.
func (r applicantRef) add(b *booking) {
	r.sh.mu.Lock()
	r.st.bookings = append(r.st.bookings, b)
	r.sh.mu.Unlock()
}

// unreserve undoes reserve: the booking left its active statuses.
func (a *applicants) unreserve(id, svc string) {
	pair := a.services.id(svc)
	sh := a.shard(id)
	sh.mu.Lock()
	st := sh.stateLocked(id)
	if invariantsEnabled && st.count(pair) <= 0 {
		sh.mu.Unlock()
		panic("BUG: allocator: applicant active count below zero")
	}
	st.addService(pair, -1)
	sh.forgetLocked(id, st) // a hold that failed before its booking was listed
	sh.mu.Unlock()
}

// penalise records a penalised event at t under p and blocks the applicant
// when the count within the window is reached.
func (a *applicants) penalise(id string, p *policy, t time.Time) {
	if p.penaltyCount == 0 {
		return
	}
	sh := a.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.stateLocked(id)
	penaliseLocked(st, p, t.UnixNano())
}

func penaliseLocked(st *applicantState, p *policy, at int64) {
	from := at - int64(p.penaltyWindow)
	if st.pen == nil {
		st.pen = &applicantPenalties{}
	}
	pen := st.pen
	keep := pen.atUnixNano[:0]
	for _, x := range pen.atUnixNano {
		if x > from {
			keep = append(keep, x)
		}
	}
	pen.atUnixNano = append(keep, at)
	if len(pen.atUnixNano) >= p.penaltyCount {
		if until := at + int64(p.penaltyBlock); until > pen.blockedUntilUnixNano {
			pen.blockedUntilUnixNano = until
		}
		pen.atUnixNano = pen.atUnixNano[:0]
	}
}

// activeOf returns the applicant's booking of service in an active status,
// nil if none. The duplicate rule leaves at most one; the list is searched
// newest first, where an active booking is.
func (a *applicants) activeOf(id, service string) *booking {
	sh := a.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.m[id]
	if st == nil || st.count(a.services.id(service)) == 0 {
		return nil
	}
	for i := len(st.bookings) - 1; i >= 0; i-- {
		if rec := st.bookings[i].rec.Load(); rec.Service == service && rec.Status.Active() {
			return st.bookings[i]
		}
	}
	return nil
}

// len returns the number of applicants in the table.
func (a *applicants) len() int {
	n := 0
	for i := range a.shards {
		sh := &a.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// list returns the applicant's bookings in creation order.
func (a *applicants) list(id string) []*booking {
	sh := a.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.m[id]
	if st == nil {
		return nil
	}
	return append([]*booking(nil), st.bookings...)
}

// snapshot returns active count and block (tests, oracle comparison).
func (a *applicants) snapshot(id string) (active int, blockedUntilUnixNano int64) {
	sh := a.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if st := sh.m[id]; st != nil {
		return st.active(), st.blockedUntil()
	}
	return 0, 0
}
