package wal

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
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

// Invariant S6 (snapshots): a state streamed from one store and installed in
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

// crashPoints is an errorfs.Injector that, while armed, takes a crash
// clone of fs before every operation: the file system as a crash at that
// instant would leave it (only what was synced).
type crashPoints struct {
	fs     *vfs.MemFS
	mu     sync.Mutex
	armed  bool
	clones []*vfs.MemFS
}

func (c *crashPoints) String() string { return "crash points" }

func (c *crashPoints) MaybeError(errorfs.Op) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.armed {
		c.clones = append(c.clones, c.fs.CrashClone(vfs.CrashCloneCfg{}))
	}
	return nil
}

func (c *crashPoints) arm(on bool) {
	c.mu.Lock()
	c.armed = on
	c.mu.Unlock()
}

// midway reads r and takes a crash clone when half of n bytes are read.
type midway struct {
	r     io.Reader
	n, at int
	take  func()
}

func (m *midway) Read(p []byte) (int, error) {
	k, err := m.r.Read(p[:min(len(p), 512)])
	if m.at < m.n/2 && m.at+k >= m.n/2 {
		m.take()
	}
	m.at += k
	return k, err
}

// Invariant S6 (snapshots): a crash at any point of a snapshot's receipt or
// install leaves a store that opens, with no staging left, holding either
// its old state (or an older one it had synced: W11) or the new one —
// never a mix. Every file system operation of the install is a crash
// point: the store is cloned as a crash there would leave it, and each
// clone is opened and checked.
func TestSnapshotCrashLeavesOldOrNew(t *testing.T) {
	src, _ := openTest(t, Options{})
	if err := src.ApplyEpoch(1, 1); err != nil {
		t.Fatal(err)
	}
	applyHolds(t, src, 2, 200)
	snap, err := src.SnapshotState()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	_ = snap.Close()

	mem := vfs.NewCrashableMem()
	cp := &crashPoints{fs: mem}
	const dir = "/dst"
	dst, err := Open(dir, Options{FS: errorfs.Wrap(mem, cp)})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if err := dst.ApplyEpoch(1, 1); err != nil {
		t.Fatal(err)
	}
	applyHolds(t, dst, 2, 60)
	if _, err := dst.SyncApplied(); err != nil {
		t.Fatal(err)
	}
	applyHolds(t, dst, 60, 80) // not synced: a crash may lose them

	// A crash in the middle of the receipt.
	m := &midway{r: bytes.NewReader(buf.Bytes()), n: buf.Len(), take: func() {
		cp.mu.Lock()
		cp.clones = append(cp.clones, mem.CrashClone(vfs.CrashCloneCfg{}))
		cp.mu.Unlock()
	}}
	if _, err := dst.StageSnapshot(m); err != nil {
		t.Fatal(err)
	}
	// A crash at every operation of the install.
	cp.arm(true)
	if err := dst.InstallSnapshot(199); err != nil {
		t.Fatal(err)
	}
	cp.arm(false)
	cp.clones = append(cp.clones, mem.CrashClone(vfs.CrashCloneCfg{})) // just after

	digests := map[uint64][32]byte{}
	want := func(applied uint64) [32]byte {
		if d, ok := digests[applied]; ok {
			return d
		}
		digests[applied] = digestAt(t, src, applied)
		return digests[applied]
	}
	seen := map[uint64]int{}
	for i, fs := range cp.clones {
		db, err := Open(dir, Options{FS: fs})
		if err != nil {
			t.Fatalf("crash point %d: the store does not open: %v", i, err)
		}
		d, applied, err := db.StateDigest()
		if err != nil {
			t.Fatal(err)
		}
		if applied != 199 && (applied < 59 || applied > 79) {
			t.Fatalf("crash point %d: applied %d is neither the old state nor the new", i, applied)
		}
		if d != want(applied) {
			t.Fatalf("crash point %d: the state at %d is not the one of %d entries: a mix", i, applied, applied)
		}
		if _, err := fs.Stat(dir + "/" + SnapshotStagingDir); err == nil {
			t.Fatalf("crash point %d: the staging survived Open", i)
		}
		seen[applied]++
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if seen[199] == 0 || len(seen) < 2 {
		t.Fatalf("the crash points saw states %v: want the old and the new", seen)
	}
	t.Logf("%d crash points; states by applied index: %v", len(cp.clones), seen)
}

// Invariant S6 with the ledger's L4: a state installed from a snapshot
// brings its void marks, and the receiver, which had none and so did not
// look for them, refuses a change writing a voided booking from then on,
// as every replica that applied the void does.
func TestSnapshotInstallBringsVoids(t *testing.T) {
	src, _ := openTest(t, Options{})
	dst, _ := openTest(t, Options{})
	for _, db := range []*DB{src, dst} {
		if err := db.ApplyEpoch(1, 1); err != nil {
			t.Fatal(err)
		}
		applyHolds(t, db, 2, 10) // dst learns it holds no void mark
	}
	late := holdChange(10)
	if exists, err := src.ApplyVoid(10, late.Bookings[0].ID, late.Bookings[0].History.First().AtUnixNano); err != nil || exists {
		t.Fatalf("void: exists %v, %v", exists, err)
	}
	snap, err := src.SnapshotState()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if err := snap.Close(); err != nil {
		t.Fatal(err)
	}
	applied, err := dst.StageSnapshot(&buf)
	if err != nil || applied != 10 {
		t.Fatalf("stage: %d, %v", applied, err)
	}
	if err := dst.InstallSnapshot(applied); err != nil {
		t.Fatal(err)
	}
	staged, err := Stage(late)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.ApplyStaged(11, staged); !errors.Is(err, ErrVoided) {
		t.Fatalf("source: a change writing a voided booking: %v, want ErrVoided", err)
	}
	if _, err := dst.ApplyStaged(11, staged); !errors.Is(err, ErrVoided) {
		t.Fatalf("receiver: a change writing a voided booking: %v, want ErrVoided", err)
	}
}
