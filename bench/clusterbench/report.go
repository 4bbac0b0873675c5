package clusterbench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"slotd/bench/peers"
)

// The cluster's targets (docs/design.md §6): the report marks each met
// or MISSED.
const (
	targetShareOfSingle  = 0.40                  // the cluster's rush ÷ one slotd's, same run
	targetTimesPostgres  = 5.0                   // the cluster's rush ÷ PostgreSQL's (make bench-peers)
	targetHoldP99        = 25 * time.Millisecond // a hold at 64 connections
	targetHoldP99Conns   = 64
	targetFailoverP99    = 3 * time.Second
	targetFailoverSample = 0.99
)

// WriteTables prints the rush table, the targets and the failover.
func (r *Report) WriteTables(w io.Writer) {
	l := &r.Layout
	fmt.Fprintf(w, "Rush: office %s, %d dates × %d seats (%d windows × %d starts), applicants in order, more than seats.\n",
		l.Office, len(l.Dates), l.Seats(), l.Windows, l.Steps())
	fmt.Fprintf(w, "slotd: one process alone; cluster: three processes on loopback, one Raft group. The workers of\n"+
		"cluster/spread go round the three API addresses, those of cluster/leader all to the group leader's.\n"+
		"cpu: how busy the machine's cores were during the run, everything on it; cpu/bkg: that busy time per booking.\n\n")
	if len(r.Rush) > 0 {
		writeRush(w, r.Rush)
	}
	r.writeTargets(w)
	if f := r.Failover; f != nil {
		fmt.Fprintf(w, "\nFailover: %d SIGKILLs of the group leader, a store of %d bookings; time to the first acknowledged write\n",
			len(f.Samples), f.Bookings)
		fmt.Fprintf(w, "  min %s  p50 %s  p99 %s  max %s   (nearest rank over %d samples)\n",
			fmtDur(f.Quantile(0)), fmtDur(f.Quantile(0.5)), fmtDur(f.Quantile(0.99)), fmtDur(f.Quantile(1)), len(f.Samples))
		var each []string
		for i, d := range f.Samples {
			each = append(each, fmt.Sprintf("%d→%d %s", f.Killed[i], f.NewLeader[i], fmtDur(d)))
		}
		fmt.Fprintf(w, "  each kill (killed→new leader): %s\n", strings.Join(each, ", "))
		var kinds []string
		for k, n := range f.Failures {
			kinds = append(kinds, fmt.Sprintf("%s: %d", k, n))
		}
		slices.Sort(kinds)
		fmt.Fprintf(w, "  failed writes, retried: %s\n", strings.Join(kinds, ", "))
		verified := "ok"
		if !f.Verified {
			verified = "FAILED: " + f.VerifyError
		}
		fmt.Fprintf(w, "  %d writes acknowledged during the failovers; replicas agree and every acknowledged booking owns its seat: %s\n",
			f.Writes, verified)
	}
}

func writeRush(w io.Writer, rows []peers.Result) {
	head := "%-15s %5s %10s %9s %9s %4s %8s %9s %7s %7s %7s  %-10s %s\n"
	fmt.Fprintf(w, head, "row", "conns", "bookings/s", "p50", "p99", "cpu", "cpu/bkg", "conflicts", "cancels", "errors", "soldout", "÷ slotd", "verified")
	single := map[int][]float64{}
	for i := range rows {
		if rows[i].Backend == RowSingle {
			single[rows[i].Connections] = rows[i].Rates()
		}
	}
	for i := range rows {
		r := &rows[i]
		share := "-"
		if s, ok := single[r.Connections]; ok && r.Backend != RowSingle {
			if rs := peers.RoundRatios(r.Rates(), s); len(rs) > 0 {
				share = fmt.Sprintf("%.0f%%", 100*median(rs))
			}
		}
		verified := "ok"
		if !r.Verified {
			verified = "FAILED: " + r.VerifyError
		}
		if r.Cut {
			verified += " (cut by time limit)"
		}
		busy, perBooking := "-", "-"
		if r.CPU != nil {
			busy = fmt.Sprintf("%.0f%%", 100*r.CPU.Busy)
			if r.Bookings > 0 {
				perBooking = fmtDur(r.CPU.Time / time.Duration(r.Bookings))
			}
		}
		fmt.Fprintf(w, "%-15s %5d %10.0f %9s %9s %4s %8s %9d %7d %7d %7d  %-10s %s\n",
			r.Backend, r.Connections, r.BookingsPerSecond(), fmtDur(r.HoldP50), fmtDur(r.HoldP99),
			busy, perBooking, r.Conflicts, r.Cancels, r.Errors, r.SoldOut, share, verified)
		if len(r.RoundRates) > 1 {
			line := fmt.Sprintf("                rounds: %s bookings/s, the median round shown", join(r.RoundRates, "%.0f"))
			if s, ok := single[r.Connections]; ok && r.Backend != RowSingle {
				line += "; ÷ slotd in each round: " + join(scale(peers.RoundRatios(r.Rates(), s), 100), "%.0f%%")
			}
			fmt.Fprintln(w, line)
		}
		if r.FirstError != "" {
			fmt.Fprintf(w, "                first error: %s\n", r.FirstError)
		}
		if r.Note != "" {
			fmt.Fprintf(w, "                %s\n", r.Note)
		}
	}
}

// writeTargets prints each target against the figure of this run.
func (r *Report) writeTargets(w io.Writer) {
	fmt.Fprintf(w, "\nTargets\n")
	met := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	row := func(name string, conns int) *peers.Result {
		for i := range r.Rush {
			if r.Rush[i].Backend == name && r.Rush[i].Connections == conns {
				return &r.Rush[i]
			}
		}
		return nil
	}
	if len(r.Connections) > 0 {
		conns := r.Connections[0]
		single := row(RowSingle, conns)
		for _, name := range []string{RowSpread, RowLeader} {
			c := row(name, conns)
			if c == nil || single == nil {
				continue
			}
			shares := peers.RoundRatios(c.Rates(), single.Rates())
			if len(shares) == 0 {
				continue
			}
			fmt.Fprintf(w, "  %-15s rush ≥ %.0f%% of slotd alone at %d conns: %.0f%% (median of rounds: %s) %s\n",
				name, 100*targetShareOfSingle, conns, 100*median(shares), join(scale(shares, 100), "%.0f%%"), met(median(shares) >= targetShareOfSingle))
			if r.PostgresRate > 0 {
				times := c.BookingsPerSecond() / r.PostgresRate
				fmt.Fprintf(w, "  %-15s rush ≥ %.0f× PostgreSQL (%.0f/s, given from make bench-peers): %.1f× %s\n",
					name, targetTimesPostgres, r.PostgresRate, times, met(times >= targetTimesPostgres))
			}
		}
	}
	for _, name := range []string{RowSingle, RowSpread, RowLeader} {
		if c := row(name, targetHoldP99Conns); c != nil {
			fmt.Fprintf(w, "  %-15s hold p99 ≤ %s at %d conns: %s %s\n", name, fmtDur(targetHoldP99), targetHoldP99Conns,
				fmtDur(c.HoldP99), met(c.HoldP99 <= targetHoldP99))
		}
	}
	if f := r.Failover; f != nil && len(f.Samples) > 0 {
		p99 := f.Quantile(targetFailoverSample)
		fmt.Fprintf(w, "  failover p99 ≤ %s: %s over %d kills %s\n", fmtDur(targetFailoverP99), fmtDur(p99), len(f.Samples), met(p99 <= targetFailoverP99))
	}
}

func scale(xs []float64, k float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = x * k
	}
	return out
}

// median is the middle of xs (the lower middle for an even count).
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

func join(xs []float64, format string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(parts, ", ")
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
}
