package wal

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// applyHolds applies holds from..to-1 to db as replicated entries at
// the index of each hold.
func applyHolds(t *testing.T, db *DB, from, to uint64) {
	t.Helper()
	for n := from; n < to; n++ {
		staged, err := Stage(holdChange(n))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ApplyStaged(n, staged); err != nil {
			t.Fatal(err)
		}
	}
}

// Wal invariant W12: a state streamed from one store and installed in
// another replaces all of its records; the applied index is the
// snapshot's; the receiver's own records past it are gone, and the
// result survives a reopen.
func TestSnapshotInstallReplacesState(t *testing.T) {
	src, _ := openTest(t, Options{})
	dst, dstDir := openTest(t, Options{})
	if err := src.ApplyEpoch(1, 1); err != nil {
		t.Fatal(err)
	}
	applyHolds(t, src, 2, 200)
	if err := dst.ApplyEpoch(1, 1); err != nil {
		t.Fatal(err)
	}
	applyHolds(t, dst, 2, 20)
	// A record the source never had: the install must remove it.
	mustCommit(t, dst, holdChange(1000))
	snap, err := src.SnapshotState()
	if err != nil {
		t.Fatal(err)
	}
	applyHolds(t, src, 200, 210) // after the snapshot: not in it
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if err := snap.Close(); err != nil {
		t.Fatal(err)
	}
	stream := buf.Bytes()

	// A stream cut short or with a flipped byte is refused.
	if _, err := dst.StageSnapshot(bytes.NewReader(stream[:len(stream)-3])); !errors.Is(err, ErrSnapshotStream) {
		t.Fatalf("cut stream: %v", err)
	}
	bad := bytes.Clone(stream)
	bad[len(bad)/2] ^= 1
	if _, err := dst.StageSnapshot(bytes.NewReader(bad)); err == nil {
		t.Fatal("a flipped byte was staged")
	}
	if err := dst.InstallSnapshot(199); !errors.Is(err, ErrSnapshotStream) {
		t.Fatalf("install with nothing staged: %v", err)
	}

	applied, err := dst.StageSnapshot(io.MultiReader(bytes.NewReader(stream)))
	if err != nil || applied != 199 {
		t.Fatalf("stage: %d, %v", applied, err)
	}
	if err := dst.InstallSnapshot(applied); err != nil {
		t.Fatal(err)
	}
	want := digestAt(t, src, 199)
	if got, at, _ := dst.StateDigest(); got != want || at != 199 {
		t.Fatalf("installed state at %d differs from the source's at 199", at)
	}
	if _, found, _ := loadHeld(dst, 1000); found {
		t.Fatal("a record of the old state survived the install")
	}
	// The store takes the next entries and survives a reopen.
	applyHolds(t, dst, 200, 210)
	dst = reopen(t, dst, dstDir)
	a, _, err := dst.Applied()
	if err != nil || a != 209 {
		t.Fatalf("applied after reopen: %d, %v", a, err)
	}
	s1, _, _ := src.StateDigest()
	if s2, _, _ := dst.StateDigest(); s1 != s2 {
		t.Fatal("after the same entries the stores differ")
	}
}

// digestAt is the digest of a store built by applying holds through
// index to a fresh store: what src held at index.
func digestAt(t *testing.T, src *DB, index uint64) [32]byte {
	t.Helper()
	db, _ := openTest(t, Options{})
	if err := db.ApplyEpoch(1, 1); err != nil {
		t.Fatal(err)
	}
	applyHolds(t, db, 2, index+1)
	d, _, err := db.StateDigest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}
