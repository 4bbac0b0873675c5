package peers

import (
	"bytes"
	"os"
	"strconv"
	"time"
)

// The machine's CPU use during a run, from /proc/stat: how busy all its
// cores were, whoever used them (generator, edge, peer servers, kernel).
// It tells a run bound by the cores (busy near 100%) from one bound by a
// wait (a peer's fsync): the first moves with the machine's speed from
// run to run, the second with its disk.

// cpuTicksPerSecond is the unit of /proc/stat (USER_HZ, 100 on every
// Linux architecture).
const cpuTicksPerSecond = 100

// cpuTimes is the machine's CPU time so far, in ticks summed over its
// cores.
type cpuTimes struct {
	busy, total uint64
}

// readCPUTimes reads /proc/stat; ok is false where it cannot (not Linux).
func readCPUTimes() (t cpuTimes, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, false
	}
	return parseCPUStat(b)
}

// parseCPUStat reads the first line of /proc/stat, "cpu  user nice
// system idle iowait irq softirq steal [guest guest_nice]": busy is user,
// nice, system, irq and softirq, total the first eight (guest time is
// counted in user already). Steal, time a virtual machine's host gave to
// others, counts in the total but is not busy: it is nobody's work here.
// ok is false for anything else.
func parseCPUStat(b []byte) (t cpuTimes, ok bool) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	fields := bytes.Fields(line)
	if len(fields) < 9 || string(fields[0]) != "cpu" {
		return cpuTimes{}, false
	}
	for i, f := range fields[1:9] {
		n, err := strconv.ParseUint(string(f), 10, 64)
		if err != nil || t.total+n < t.total {
			return cpuTimes{}, false
		}
		t.total += n
		if i != 3 && i != 4 && i != 7 { // idle, iowait, steal
			t.busy += n
		}
	}
	return t, true
}

// CPUUse is the machine's CPU use between two readings.
type CPUUse struct {
	// Busy is the share of all cores' time that was busy, 0..1.
	Busy float64
	// Time is the busy time, summed over the cores.
	Time time.Duration
}

// cpuBetween is the use from a to b, or false when a reading is missing
// or the counters did not move forward.
func cpuBetween(a, b cpuTimes, aOK, bOK bool) (CPUUse, bool) {
	if !aOK || !bOK || b.total <= a.total || b.busy < a.busy || b.busy-a.busy > b.total-a.total {
		return CPUUse{}, false
	}
	busy := b.busy - a.busy
	return CPUUse{
		Busy: float64(busy) / float64(b.total-a.total),
		Time: time.Duration(busy) * time.Second / cpuTicksPerSecond,
	}, true
}
