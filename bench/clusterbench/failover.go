package clusterbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"slotd/api"
	"slotd/bench/peers"
	"slotd/client"
)

// The failover measurement: a three-node cluster holding the bookings of
// one rushed date; the group's leader is killed with SIGKILL, writers
// book on the other dates until one booking is acknowledged, and the time
// from the kill to that acknowledgement is one sample. The killed node is
// started again on its data and the cluster left to converge before the
// next kill.
//
// The writers are what a portal backend does that knows the API
// addresses and nothing of the cluster's roles: each request goes to a
// random running node (a request to the killed one would fail at once,
// its port closed, and be retried), and any failure (503 no_leader, a
// timeout) is retried on another random node after failoverRetry,
// without waiting out Retry-After, so that the sample is the cluster's
// time, not the client's patience.

// failoverRetry is a writer's wait after a failed request.
const failoverRetry = 5 * time.Millisecond

// failoverRequestTimeout bounds one write of the failover.
const failoverRequestTimeout = 2 * time.Second

// Failover is the outcome of the failover measurement.
type Failover struct {
	// Samples are the times from each SIGKILL of the leader to the first
	// acknowledged write, in the order of the kills.
	Samples []time.Duration
	// Killed and NewLeader are the node killed and the node whose
	// engine acknowledged the first write, per kill.
	Killed, NewLeader []int
	// Retried counts the failed writes of each kill before the first
	// acknowledgement (all writers).
	Retried []int
	// Failures counts the failed writes of all kills by what they got:
	// "503 no_leader", "no answer" (a transport error or a timeout), and
	// so on.
	Failures map[string]int
	// Bookings is what the store held when the kills began (the rushed
	// date), which the new leader rebuilds its engine from.
	Bookings int
	// Writes is the bookings the writers got acknowledged in all.
	Writes int
	// Verified is set when, after the last kill and restart, the three
	// replicas agreed and every acknowledged booking (the rush's and the
	// writers') owned its seat; VerifyError says what differed otherwise.
	Verified    bool
	VerifyError string
}

// Quantile returns the q-quantile of the samples by nearest rank: the
// smallest sample with at least q of them at or below it.
func (f *Failover) Quantile(q float64) time.Duration {
	if len(f.Samples) == 0 {
		return 0
	}
	s := slices.Clone(f.Samples)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.9999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// measureFailover runs cfg.Kills kills on a fresh cluster. r is the
// rush's shape; its first date is rushed before the kills, the others
// are what the writers book.
func measureFailover(ctx context.Context, cfg *Config, r peers.Rush) (*Failover, error) {
	fmt.Fprintf(cfg.Progress, "failover: starting a cluster, rushing %s\n", r.Layout.Dates[0])
	dir, err := os.MkdirTemp(cfg.DataDir, "slotd-bench-failover-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	f, err := startCluster(cfg.Slotd, dir, cfg.LogLevel, clusterLen, 1)
	if err != nil {
		return nil, err
	}
	defer f.kill()
	leader, err := f.leader(readyWaitMax)
	if err != nil {
		return nil, err
	}
	lay := r.Layout
	if err := setupOffice(ctx, leader.addr, &lay); err != nil {
		return nil, err
	}
	pre := r
	pre.Layout.Dates = lay.Dates[:1]
	pre.Addrs = f.addrs()
	pre.Workers = cfg.Connections[0]
	var out peers.Outcome
	if len(cfg.GeneratorCommand) > 0 {
		out, err = peers.GenerateInChild(ctx, cfg.GeneratorCommand, pre)
	} else {
		out, err = peers.GenerateHTTP(ctx, pre)
	}
	if err != nil {
		return nil, fmt.Errorf("failover: generator: %w", err)
	}
	res := &Failover{Bookings: out.Result.Bookings - out.Result.Cancels}
	acked := out.Acked
	hadErrors := out.Result.Errors > 0
	writeDates := lay.Dates
	if len(writeDates) > 1 {
		writeDates = writeDates[1:]
	}
	w := &writers{fleet: f, lay: &lay, dates: writeDates}
	for kill := range cfg.Kills {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if _, err := f.converged(benchGroup, readyWaitMax); err != nil {
			return res, fmt.Errorf("failover: before kill %d: %w", kill+1, err)
		}
		leader, err := f.leader(readyWaitMax)
		if err != nil {
			return res, fmt.Errorf("failover: before kill %d: %w", kill+1, err)
		}
		killed := time.Now()
		leader.kill()
		first, err := w.untilFirst(ctx, cfg.FailoverWriters, killed, cfg.FailoverWaitMax)
		if err != nil {
			return res, fmt.Errorf("failover: kill %d of node %d: %w", kill+1, leader.id, err)
		}
		res.Samples = append(res.Samples, first.after)
		res.Killed = append(res.Killed, leader.id)
		res.NewLeader = append(res.NewLeader, first.node)
		res.Retried = append(res.Retried, first.retried)
		fmt.Fprintf(cfg.Progress, "failover: kill %2d of node %d: first write acknowledged after %s (by node %d's engine, %d failed writes before)\n",
			kill+1, leader.id, first.after.Round(time.Millisecond), first.node, first.retried)
		if err := leader.start(); err != nil {
			return res, fmt.Errorf("failover: restart after kill %d: %w", kill+1, err)
		}
	}
	acked = append(acked, w.acked...)
	res.Writes = len(w.acked)
	res.Failures = w.failures
	hadErrors = hadErrors || w.uncertain.Load() > 0
	_, verr := f.converged(benchGroup, readyWaitMax)
	if verr == nil {
		if leader, verr = f.leader(readyWaitMax); verr == nil {
			verr = peers.Verify(ctx, agendaReader{leader.addr}, &lay, acked, hadErrors)
		}
	}
	if verr != nil {
		res.VerifyError = verr.Error()
	} else {
		res.Verified = true
	}
	return res, nil
}

// writers book on the failover's dates. Their state is kept across
// kills; untilFirst runs them one kill at a time.
type writers struct {
	fleet *fleet
	lay   *peers.Layout
	dates []string
	seq   atomic.Int64

	mu       sync.Mutex
	acked    []peers.Acked
	failures map[string]int // by kind, as Failover.Failures
	// uncertain counts writes whose outcome is unknown (a timeout, a
	// broken connection, or a leader that did not answer a forwarded
	// request): they may have committed.
	uncertain atomic.Int64
}

// firstWrite is the first acknowledged write after a kill.
type firstWrite struct {
	after   time.Duration // from the kill to the acknowledgement
	node    int           // the node whose engine acknowledged it (the new leader)
	retried int           // failed writes before it
}

// untilFirst runs n writers until one write sent after killed is
// acknowledged, or waitMax passes.
func (w *writers) untilFirst(ctx context.Context, n int, killed time.Time, waitMax time.Duration) (firstWrite, error) {
	ctx, cancel := context.WithTimeout(ctx, waitMax)
	defer cancel()
	var once sync.Once
	var first firstWrite
	got := false
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				at, node, err := w.write(ctx)
				if err == nil {
					once.Do(func() {
						first = firstWrite{after: at.Sub(killed), node: node, retried: int(failed.Load())}
						got = true
						cancel()
					})
					return
				}
				failed.Add(1)
				select {
				case <-ctx.Done():
				case <-time.After(failoverRetry):
				}
			}
		})
	}
	wg.Wait()
	if !got {
		return first, fmt.Errorf("no write acknowledged within %s of the kill (%d failed)", waitMax, failed.Load())
	}
	return first, nil
}

// write books one applicant at the first free start of a failover date
// through a random running node. On success it returns when the
// acknowledgement arrived and the node that leads the group as the
// answering node sees it afterwards (0 if it cannot tell); an error
// means the write failed and is to be retried.
func (w *writers) write(ctx context.Context) (acked time.Time, node int, err error) {
	up := make([]*server, 0, len(w.fleet.servers))
	for _, s := range w.fleet.servers {
		if s.up() {
			up = append(up, s)
		}
	}
	if len(up) == 0 {
		return time.Time{}, 0, errors.New("no node runs")
	}
	s := up[rand.IntN(len(up))]
	k := w.seq.Add(1)
	date := w.dates[int(k)%len(w.dates)]
	rctx, cancel := context.WithTimeout(ctx, failoverRequestTimeout)
	defer cancel()
	resp, err := apiOf(s.addr, portalKey).Hold(rctx, &client.HoldParams{}, client.HoldJSONRequestBody{
		Office: w.lay.Office, Service: w.lay.Service, Applicant: new(fmt.Sprintf("f-%d", k)),
		EarliestAfter: new(w.lay.Start(date, 0)), Confirm: new(true)})
	if err != nil {
		if ctx.Err() == nil { // not the end of the wait
			w.fail("no answer")
			w.uncertain.Add(1) // sent, maybe committed, answer lost
		}
		return time.Time{}, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	acked = time.Now()
	if err != nil {
		w.uncertain.Add(1)
		return time.Time{}, 0, err
	}
	if resp.StatusCode != http.StatusCreated {
		var p client.Problem
		_ = json.Unmarshal(b, &p)
		w.fail(fmt.Sprintf("%d %s", resp.StatusCode, p.Code))
		if p.Code == api.CodeNoLeader && strings.Contains(p.Detail, "did not answer") {
			w.uncertain.Add(1) // forwarded to a leader that may have committed it before it died
		}
		return time.Time{}, 0, fmt.Errorf("%s: %d %s %s", s.name(), resp.StatusCode, p.Code, p.Detail)
	}
	var bk client.Booking
	if err := json.Unmarshal(b, &bk); err != nil {
		w.uncertain.Add(1)
		return time.Time{}, 0, fmt.Errorf("%s: booking answer: %w", s.name(), err)
	}
	w.mu.Lock()
	w.acked = append(w.acked, peers.Acked{ID: bk.Id, Date: bk.Start.UTC().Format(time.DateOnly), Start: bk.Start, Window: bk.Window})
	w.mu.Unlock()
	return acked, w.leaderNow(s), nil
}

func (w *writers) fail(kind string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failures == nil {
		w.failures = map[string]int{}
	}
	w.failures[kind]++
}

// leaderNow names the node that runs the group's engine as seen from s,
// which has just had a write acknowledged; 0 if s cannot tell.
func (w *writers) leaderNow(s *server) int {
	st, err := s.status(benchGroup)
	if err != nil {
		return 0
	}
	return int(st.Leader)
}
