package loadtest

import (
	"container/heap"
	"context"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// followQueue feeds the follow-up attack: the next request of an applicant
// whose previous answer arrived, due once its think time has passed. It is
// both that attack's Pacer and, through targeter, its Targeter. Safe for
// concurrent use.
//
// Why a pacer and not a blocking Targeter: vegeta stamps a result's start
// time before it asks the Targeter for the request, so a Targeter that
// waits for the next ready request would add the wait to the measured
// latency. Here Pace does the waiting and only lets a tick through when a
// request is ready; the Targeter then finds it at once, and the latency is
// the server's alone.
//
// Invariants (checked by the BUG panics):
//
//	Q1. Pace returns stop=false only after moving exactly one ready
//	    request to ready; each tick calls the Targeter once, so the
//	    Targeter never finds ready empty.
//	Q2. Pace returns stop=true once arrivals ended and no request is
//	    outstanding (queued, ready or in flight), or when ctx ends.
type followQueue struct {
	ctx   context.Context
	began time.Time
	wake  chan struct{} // capacity 1: "something changed, look again"

	mu           sync.Mutex
	pending      requestHeap // by due time
	ready        []request   // handed out by Pace, not yet taken by the Targeter
	outstanding  int         // requests created and not yet answered and handled
	arrivalsDone bool
	dispatched   uint64
	seq          uint64
}

func newFollowQueue(ctx context.Context) *followQueue {
	return &followQueue{ctx: ctx, began: time.Now(), wake: make(chan struct{}, 1)}
}

var _ vegeta.Pacer = (*followQueue)(nil)

func (q *followQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// push queues r, due at due. The request counts as outstanding until
// answered(); callers push follow-ups before marking the answer handled so
// the count never touches zero in between.
func (q *followQueue) push(r request, due time.Time) {
	q.mu.Lock()
	q.seq++
	heap.Push(&q.pending, queued{req: r, due: due, seq: q.seq})
	q.outstanding++
	q.mu.Unlock()
	q.signal()
}

// arrived counts a request the arrival attack created.
func (q *followQueue) arrived() {
	q.mu.Lock()
	q.outstanding++
	q.mu.Unlock()
}

// answered marks one request's answer handled.
func (q *followQueue) answered() {
	q.mu.Lock()
	q.outstanding--
	if q.outstanding < 0 {
		q.mu.Unlock()
		panic("BUG: followQueue: more answers than requests")
	}
	q.mu.Unlock()
	q.signal()
}

// arrivalsFinished says no arrival will create requests any more.
func (q *followQueue) arrivalsFinished() {
	q.mu.Lock()
	q.arrivalsDone = true
	q.mu.Unlock()
	q.signal()
}

// unanswered returns the queued requests that were never sent (after the
// attack stopped early).
func (q *followQueue) unanswered() []request {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]request, 0, len(q.pending)+len(q.ready))
	for _, it := range q.pending {
		out = append(out, it.req)
	}
	return append(out, q.ready...)
}

// Pace implements vegeta.Pacer; it blocks until a request is due (Q1).
func (q *followQueue) Pace(time.Duration, uint64) (time.Duration, bool) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		var timerC <-chan time.Time
		q.mu.Lock()
		switch {
		case len(q.pending) > 0:
			wait := time.Until(q.pending[0].due)
			if wait <= 0 {
				it := heap.Pop(&q.pending).(queued)
				q.ready = append(q.ready, it.req)
				q.dispatched++
				q.mu.Unlock()
				return 0, false
			}
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			timerC = timer.C
		case q.arrivalsDone && q.outstanding == 0:
			q.mu.Unlock()
			return 0, true // Q2
		}
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-timerC:
		case <-q.ctx.Done():
			return 0, true // Q2
		}
	}
}

// Rate implements vegeta.Pacer: the mean rate of follow-ups so far. The
// follow-up rate is not planned; it is whatever the applicants' answers
// make it.
func (q *followQueue) Rate(elapsed time.Duration) float64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	if elapsed <= 0 {
		return 0
	}
	return float64(q.dispatched) / elapsed.Seconds()
}

// take pops the oldest ready request for the Targeter.
func (q *followQueue) take() request {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.ready) == 0 {
		panic("BUG: followQueue: a tick without a ready request (Q1)")
	}
	r := q.ready[0]
	q.ready[0] = request{}
	q.ready = q.ready[1:]
	return r
}

type queued struct {
	req request
	due time.Time
	seq uint64 // FIFO among equal due times
}

type requestHeap []queued

func (h requestHeap) Len() int { return len(h) }
func (h requestHeap) Less(i, j int) bool {
	if !h[i].due.Equal(h[j].due) {
		return h[i].due.Before(h[j].due)
	}
	return h[i].seq < h[j].seq
}
func (h requestHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *requestHeap) Push(x any)   { *h = append(*h, x.(queued)) }
func (h *requestHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = queued{}
	*h = old[:len(old)-1]
	return it
}
