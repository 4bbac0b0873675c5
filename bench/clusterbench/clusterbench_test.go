package clusterbench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"slotd/bench/peers"
	"slotd/internal/slotdtest"
)

// TestRunSmall runs the whole bench on a small office: one slotd and a
// three-node cluster are rushed, one failover is measured, and every
// acknowledged booking is read back from the serving node with its seat,
// no seat owned twice, the replicas agreeing. It asserts what was booked
// and read back, never how fast.
func TestRunSmall(t *testing.T) {
	lay := peers.DefaultLayout(time.Now(), 2)
	lay.Windows, lay.OpenMinute, lay.CloseMinute = 4, 8*60, 9*60 // 48 seats a date
	var progress bytes.Buffer
	rep, err := Run(context.Background(), Config{
		Slotd: slotdtest.Build(t), Layout: &lay, Connections: []int{4}, Kills: 1, FailoverWriters: 2,
		DataDir: t.TempDir(), Progress: &progress,
	})
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	if len(rep.Rush) != 3 {
		t.Fatalf("%d rows, want slotd, cluster/spread and cluster/leader", len(rep.Rush))
	}
	applicants := lay.Seats() * 125 / 100 * len(lay.Dates)
	for _, r := range rep.Rush {
		if !r.Verified || r.Errors != 0 || r.Cut {
			t.Errorf("%s: verified %v (%s), %d errors (first: %s), cut %v", r.Backend, r.Verified, r.VerifyError, r.Errors, r.FirstError, r.Cut)
		}
		// Every seat sold, some more than once through cancels, and the
		// applicants left over turned away.
		seats := lay.Seats() * len(lay.Dates)
		if r.Bookings-r.Cancels != seats || r.Bookings+r.SoldOut != applicants {
			t.Errorf("%s: %d booked, %d cancelled, %d turned away: want %d seats held and %d applicants served",
				r.Backend, r.Bookings, r.Cancels, r.SoldOut, seats, applicants)
		}
	}
	f := rep.Failover
	if f == nil || len(f.Samples) != 1 || !f.Verified || f.Writes < 1 {
		t.Fatalf("failover %+v", f)
	}
	var out strings.Builder
	rep.WriteTables(&out)
	for _, want := range []string{"cluster/spread", "cluster/leader", "failover p99"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestParseProcStatCPU(t *testing.T) {
	f := func(in string, want time.Duration, wantOK bool) {
		t.Helper()
		got, ok := parseProcStatCPU([]byte(in))
		if got != want || ok != wantOK {
			t.Errorf("parseProcStatCPU(%q) = %v, %v; want %v, %v", in, got, ok, want, wantOK)
		}
	}
	// utime 250 and stime 50 ticks: 3 s.
	f("4242 (slotd) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 12 0 100 0 0", 3*time.Second, true)
	// A command with spaces and a parenthesis is skipped whole.
	f("7 (a b) c) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 1 0 0", 30*time.Millisecond, true)
	f("7 (slotd) S 1 7", 0, false)                    // cut short
	f("7 slotd S 1 7 7 0 -1 0 0 0 0 0 1 2", 0, false) // no command field
	f("7 (slotd) S 1 7 7 0 -1 0 0 0 0 0 x 2 0", 0, false)
}
