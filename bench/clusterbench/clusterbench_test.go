package clusterbench

import (
	"bytes"
	"context"
	"os"
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

// TestPeersTableClusterRowBesidePostgres runs package peers' HTTP table
// with the cluster/spread row on a small office in two rounds: the row
// takes its turn in each round, sells every seat, and is verified
// through the agenda with the three replicas agreeing. Beside
// PostgreSQL (SLOTD_PEERS_PG, set by make bench-peers-test) the table
// divides the cluster's bookings/s by PostgreSQL's round by round,
// against design §6's 5×. It asserts what was booked and read back and
// what the table shows, never how fast.
func TestPeersTableClusterRowBesidePostgres(t *testing.T) {
	lay := peers.DefaultLayout(time.Now(), 1)
	lay.Windows, lay.OpenMinute, lay.CloseMinute = 4, 8*60, 9*60 // 48 seats a date
	row, err := NewRow(RowSpread, slotdtest.Build(t), 0, "")
	if err != nil {
		t.Fatal(err)
	}
	pg := os.Getenv("SLOTD_PEERS_PG")
	rep, err := peers.Run(context.Background(), peers.Config{
		Connections: []int{4}, Rounds: 2, EngineGoroutines: []int{}, Layout: &lay, DataDir: t.TempDir(),
		PostgresDSN: pg, Processes: []peers.ProcessBackend{row},
	})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	rep.WriteTables(&out)
	var cluster *peers.Result
	for i := range rep.HTTP {
		if rep.HTTP[i].Backend == RowSpread {
			cluster = &rep.HTTP[i]
		}
	}
	if cluster == nil || len(rep.Engine) != 0 {
		t.Fatalf("want a cluster/spread row in the HTTP table and no engine table:\n%s", out.String())
	}
	applicants := lay.Seats() * 125 / 100
	if !cluster.Verified || cluster.Errors != 0 || cluster.Cut || len(cluster.RoundRates) != 2 ||
		cluster.Bookings-cluster.Cancels != lay.Seats() || cluster.Bookings+cluster.SoldOut != applicants ||
		!strings.Contains(cluster.Note, "the 3 replicas agree at applied index") {
		t.Fatalf("cluster row %+v: want two verified rounds, every seat held, the replicas agreeing:\n%s", *cluster, out.String())
	}
	t.Logf("the table:\n%s", out.String())
	wants := []string{"cluster/spread ×"}
	if pg != "" {
		wants = append(wants, "cluster/spread × in each round: ", " below 5×)")
	}
	for _, want := range wants {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

// TestRowCheckCatchesForgedBooking: a cluster row's check reads the
// bookings back from the cluster, so a booking the client claims was
// acknowledged but that no node stored fails it, where the true history
// passes.
func TestRowCheckCatchesForgedBooking(t *testing.T) {
	lay := peers.DefaultLayout(time.Now(), 1)
	lay.Windows, lay.OpenMinute, lay.CloseMinute = 2, 8*60, 9*60 // 24 seats
	row, err := NewRow(RowLeader, slotdtest.Build(t), 0, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := row.Start(ctx, t.TempDir(), &lay)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	r := peers.Rush{Layout: lay, Workers: 2, ApplicantsPerDate: lay.Seats() / 2, ReadAvailability: true,
		DurationMax: time.Minute, RequestTimeout: 10 * time.Second}
	r.Addrs, r.Authorization = p.Target()
	out, err := peers.GenerateHTTP(ctx, r)
	if err != nil || out.Result.Bookings != lay.Seats()/2 || out.Result.Errors != 0 {
		t.Fatalf("rush: %v, %+v", err, out.Result)
	}
	if _, err := p.Check(ctx, out.Acked, false); err != nil {
		t.Fatalf("the true history: %v", err)
	}
	forged := peers.Acked{ID: "forged-booking", Date: lay.Dates[0], Start: lay.Start(lay.Dates[0], lay.Steps()-1)}
	if _, err := p.Check(ctx, append(out.Acked, forged), false); err == nil {
		t.Fatal("the check passed a booking no node stored")
	}
}
