package wal

import (
	"runtime/debug"
	"testing"
)

// naiveRelaxGC is relaxGC as each recovery setting the target and
// putting back the one it found: the variant the test must catch.
func naiveRelaxGC() func() {
	prev := debug.SetGCPercent(recoverGCPercent)
	return func() { debug.SetGCPercent(prev) }
}

// gcTargetAfterOverlap runs two recoveries' GC relaxations that overlap,
// the first ending before the second (two groups' stores recovered at
// once on one node), and returns the GC target left.
func gcTargetAfterOverlap(relax func() func()) int {
	endA := relax()
	endB := relax()
	endA()
	endB()
	return gcTarget()
}

// Recoveries that overlap leave the GC target as it was before them.
func TestRecoverGCTargetRestoredAfterOverlap(t *testing.T) {
	const before = 100
	defer debug.SetGCPercent(debug.SetGCPercent(before))
	if got := gcTargetAfterOverlap(naiveRelaxGC); got != recoverGCPercent {
		t.Fatalf("the naive variant left %d, want it caught leaving %d", got, recoverGCPercent)
	}
	debug.SetGCPercent(before)
	if got := gcTargetAfterOverlap(relaxGC); got != before {
		t.Fatalf("GC target after two overlapping recoveries: %d, want %d", got, before)
	}
	// Nested the other way, and ended twice, it is the same.
	endA := relaxGC()
	endB := relaxGC()
	endB()
	endB()
	if got := gcTarget(); got != recoverGCPercent {
		t.Fatalf("GC target with one recovery still running: %d, want %d", got, recoverGCPercent)
	}
	endA()
	if got := gcTarget(); got != before {
		t.Fatalf("GC target after both ended: %d, want %d", got, before)
	}
}

// gcTarget is the GC target in force.
func gcTarget() int {
	p := debug.SetGCPercent(-1)
	debug.SetGCPercent(p)
	return p
}
