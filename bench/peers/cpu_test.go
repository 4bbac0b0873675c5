package peers

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

const procStat = "cpu  4705 150 1120 16250 520 0 30 10 7 0\ncpu0 2350 75 560 8125 260 0 15 5 3 0\nintr 1 2 3\n"

// TestParseCPUStat: busy is user+nice+system+irq+softirq of the first
// line; steal counts in the total only, and guest (inside user already)
// is not counted twice.
func TestParseCPUStat(t *testing.T) {
	got, ok := parseCPUStat([]byte(procStat))
	want := cpuTimes{busy: 4705 + 150 + 1120 + 0 + 30, total: 4705 + 150 + 1120 + 16250 + 520 + 0 + 30 + 10}
	if !ok || got != want {
		t.Fatalf("parseCPUStat = %+v, %v; want %+v", got, ok, want)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8\n", "cpu 1 2 3 4 5 6 7\n", "cpu 1 2 x 4 5 6 7 8\n",
		"cpu 18446744073709551615 1 0 0 0 0 0 0\n", "intr 1\ncpu 1 2 3 4 5 6 7 8\n"} {
		if _, ok := parseCPUStat([]byte(bad)); ok {
			t.Errorf("parseCPUStat(%q) accepted", bad)
		}
	}
}

// TestCPUBetween: the share and time busy between two readings, and no
// answer from a missing reading or counters that went backwards.
func TestCPUBetween(t *testing.T) {
	a, b := cpuTimes{busy: 1000, total: 5000}, cpuTimes{busy: 1150, total: 5200}
	use, ok := cpuBetween(a, b, true, true)
	if !ok || use.Busy != 0.75 || use.Time != 1500*time.Millisecond {
		t.Fatalf("cpuBetween = %+v, %v; want 75%% and 1.5s", use, ok)
	}
	for _, c := range []struct {
		a, b     cpuTimes
		aOK, bOK bool
	}{{a, b, false, true}, {a, b, true, false}, {b, a, true, true}, {a, a, true, true},
		{a, cpuTimes{busy: 1300, total: 5100}, true, true}} {
		if use, ok := cpuBetween(c.a, c.b, c.aOK, c.bOK); ok {
			t.Errorf("cpuBetween(%+v, %+v, %v, %v) = %+v, want none", c.a, c.b, c.aOK, c.bOK, use)
		}
	}
}

// TestTableShowsCPU: a row with the machine's CPU use shows how busy it
// was and the busy time per booking; one without shows dashes.
func TestTableShowsCPU(t *testing.T) {
	rows := []Result{
		{Backend: "slotd", Mode: "http", Connections: 64, Bookings: 20000, Elapsed: time.Second, Verified: true,
			CPU: &CPUUse{Busy: 0.97, Time: 2 * time.Second}},
		{Backend: "redis", Mode: "http", Connections: 64, Bookings: 5000, Elapsed: time.Second, Verified: true},
	}
	var out bytes.Buffer
	writeTable(&out, rows, true, []subject{slotdSubject})
	lines := strings.Split(out.String(), "\n")
	if len(lines) < 3 || !strings.Contains(lines[1], " 97%    100µs ") || !strings.Contains(lines[2], "    -        - ") {
		t.Fatalf("table:\n%s", out.String())
	}
}

// FuzzParseCPUStat: whatever /proc/stat holds, the reader never panics,
// and what it accepts has no more busy time than time in all.
func FuzzParseCPUStat(f *testing.F) {
	f.Add([]byte(procStat))                                 // a real first line with guest fields, then per-core lines
	f.Add([]byte("cpu 1 2 3 4 5 6 7 8"))                    // the eight fields only, no newline
	f.Add([]byte("cpu  -1 2 3 4 5 6 7 8 9 10\n"))           // a negative count
	f.Add([]byte("cpu 18446744073709551615 1 0 0 0 0 0 0")) // a sum that overflows
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, ok := parseCPUStat(b); ok && got.busy > got.total {
			t.Fatalf("parseCPUStat(%q) = %+v: busy above total", b, got)
		}
	})
}
