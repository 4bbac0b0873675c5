package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"slotd/allocator"
	"slotd/internal/slotdtest/testtime"
)

// backupLoadMax bounds the bookings the load of the backup tests makes.
const backupLoadMax = 3000

// bookingLoad books, from several goroutines, distinct applicants at the
// first free start from tomorrow on (every other one confirmed at once),
// until stop is closed or backupLoadMax bookings are made, and records
// every acknowledged booking with its status.
type bookingLoad struct {
	mu    sync.Mutex
	acked map[allocator.ID]allocator.Status
	stop  chan struct{}
	wg    sync.WaitGroup
	errs  chan error
}

func startBookingLoad(e *allocator.Engine, workers int) *bookingLoad {
	l := &bookingLoad{acked: map[allocator.ID]allocator.Status{}, stop: make(chan struct{}), errs: make(chan error, workers)}
	for w := range workers {
		l.wg.Go(func() {
			for i := 0; i < backupLoadMax/workers; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				b, err := e.Hold(t0, allocator.HoldRequest{Office: "msk-sakharovo", Service: "patent",
					Applicant: fmt.Sprintf("load-%d-%d", w, i), EarliestAfter: testtime.At(1, 0, 0), Confirm: i%2 == 0},
					allocator.Meta{Actor: "portal-a"})
				if errors.Is(err, allocator.ErrSlotTaken) {
					i-- // another worker took that start first: the next one
					continue
				}
				if err != nil {
					l.errs <- fmt.Errorf("hold %d of worker %d: %w", i, w, err)
					return
				}
				l.mu.Lock()
				l.acked[b.ID] = b.Status
				l.mu.Unlock()
			}
		})
	}
	return l
}

// snapshot returns the bookings acknowledged so far.
func (l *bookingLoad) snapshot() map[allocator.ID]allocator.Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.acked)
}

// end stops the load and fails the test if a hold failed.
func (l *bookingLoad) end(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	select {
	case err := <-l.errs:
		t.Fatal(err)
	default:
	}
}

// copyDir copies the regular files of src into the new directory dst, as
// an operator restores a backup into a fresh data directory.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		in, err := os.Open(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dst, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			t.Fatal(err)
		}
		in.Close()
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// recoverChecked recovers db into a new engine, runs the engine's own
// check, and requires every booking of want in its status.
func recoverChecked(t *testing.T, db *DB, want map[allocator.ID]allocator.Status) (*allocator.Engine, RecoveryStats) {
	t.Helper()
	e, err := allocator.New(allocator.Config{Journal: db})
	if err != nil {
		t.Fatal(err)
	}
	st, err := Recover(db, e, t0)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if err := e.Verify(); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	for id, s := range want {
		b, err := e.Get(id, "")
		if err != nil || b.Status != s {
			t.Fatalf("booking %s acknowledged %s before the backup: %v %v", id, s, b.Status, err)
		}
	}
	return e, st
}

// TestBackupUnderLoadRestores takes a backup while bookings are being
// made and restores it into a fresh data directory: every booking
// acknowledged before the backup began is there in its status, the store
// passes its own checks (Open's sync mark, W9; Recover's record checks,
// W3; the engine's Verify), it takes new bookings, and the files named
// beside the store came along.
func TestBackupUnderLoadRestores(t *testing.T) {
	db, dir := openTest(t, Options{})
	secret := bytes.Repeat([]byte{7}, 32)
	if err := os.WriteFile(filepath.Join(dir, "ticket-secret"), secret, 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := allocator.New(allocator.Config{Journal: db})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Recover(db, e, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutOffice(t0, testOffice("msk-sakharovo"), allocator.Meta{Actor: "admin"}); err != nil {
		t.Fatal(err)
	}
	load := startBookingLoad(e, 4)
	var loadErr error
	if err := testtime.Poll(time.Minute, func() error {
		select {
		case loadErr = <-load.errs:
			return nil // the load failed: stop waiting
		default:
		}
		if n := len(load.snapshot()); n < 300 {
			return fmt.Errorf("%d bookings acknowledged, waiting for 300", n)
		}
		return nil
	}); err != nil || loadErr != nil {
		load.end(t)
		t.Fatal(err, loadErr)
	}
	before := load.snapshot()
	roundBefore := db.syncedRound.Load()
	target := filepath.Join(t.TempDir(), "backup")
	st, err := db.Backup(target, []string{"ticket-secret", "dev-keys.json"})
	during := len(load.snapshot()) - len(before)
	load.end(t)
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	t.Logf("backup of %d acknowledged bookings, %d more acknowledged while it ran: %+v", len(before), during, st)
	if st.SyncedRound < roundBefore || st.Files == 0 || st.Bytes == 0 || st.Dir != target {
		t.Fatalf("backup stats %+v: want round ≥ %d, files and bytes, dir %s", st, roundBefore, target)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	restored := filepath.Join(t.TempDir(), "restored")
	copyDir(t, target, restored)
	if got, err := os.ReadFile(filepath.Join(restored, "ticket-secret")); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("ticket secret in the backup: %x, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(restored, "dev-keys.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a file the data directory does not hold is in the backup: %v", err)
	}
	// The backup's mark is the round synced before it began, not the
	// live mark: Open of the copy checks it holds that round (W9).
	mark, _, err := readSyncMark(vfs.Default, filepath.Join(restored, SyncMarkFile))
	if err != nil || mark != st.SyncedRound {
		t.Fatalf("backup's %s holds round %d (%v), want %d", SyncMarkFile, mark, err, st.SyncedRound)
	}

	// Read-only first, as slotd dump reads a backup: nothing changes.
	markBytes, _ := os.ReadFile(filepath.Join(restored, SyncMarkFile))
	ro, err := OpenReadOnly(restored, Options{})
	if err != nil {
		t.Fatalf("OpenReadOnly: %v", err)
	}
	_, rst := recoverChecked(t, ro, before)
	if rst.Bookings < len(before) {
		t.Fatalf("read-only recovery found %d bookings, want at least %d", rst.Bookings, len(before))
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(filepath.Join(restored, SyncMarkFile)); !bytes.Equal(after, markBytes) {
		t.Fatalf("OpenReadOnly rewrote %s", SyncMarkFile)
	}

	// Then as slotd starts on it: it opens, recovers, and takes writes.
	db2, err := Open(restored, Options{})
	if err != nil {
		t.Fatalf("Open of the restored backup: %v", err)
	}
	t.Cleanup(func() { _ = db2.Close() })
	e2, _ := recoverChecked(t, db2, before)
	if _, err := e2.Hold(t0, allocator.HoldRequest{Office: "msk-sakharovo", Service: "patent", Applicant: "after-restore",
		EarliestAfter: testtime.At(1, 0, 0)}, allocator.Meta{Actor: "portal-a"}); err != nil {
		t.Fatalf("hold on the restored store: %v", err)
	}
	if err := e2.Verify(); err != nil {
		t.Fatal(err)
	}
}

// TestBackupTarget: a backup never writes over anything and says which
// path is wrong and why; an empty directory is taken; a refused or
// failed backup leaves nothing behind beside the target.
func TestBackupTarget(t *testing.T) {
	db, dir := openWithOffice(t)
	root := t.TempDir()
	mustWrite := func(path string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f := func(target string, want error, wantWords string) {
		t.Helper()
		_, err := db.Backup(target, nil)
		if !errors.Is(err, want) || !strings.Contains(err.Error(), target) || !strings.Contains(err.Error(), wantWords) {
			t.Fatalf("Backup(%s) = %v, want %v naming the path and saying %q", target, err, want, wantWords)
		}
	}
	mustWrite(filepath.Join(root, "full", "keep"))
	f(filepath.Join(root, "full"), ErrBackupTargetExists, "is not empty")
	mustWrite(filepath.Join(root, "file"))
	f(filepath.Join(root, "file"), ErrBackupTargetExists, "is a file")
	f(filepath.Join(root, "missing", "backup"), ErrBackupTargetUnusable, "does not exist")
	f(filepath.Join(root, "file", "backup"), ErrBackupTargetUnusable, "is not a directory")
	f(filepath.Join(dir, "backup"), ErrBackupTargetUnusable, "is inside the data directory")
	f(dir, ErrBackupTargetUnusable, "is inside the data directory")
	if parent := unwritableDir(t); parent != "" {
		f(filepath.Join(parent, "backup"), ErrBackupTargetUnusable, "cannot create a directory in "+parent)
	}
	if got, _ := os.ReadFile(filepath.Join(root, "full", "keep")); string(got) != "x" {
		t.Fatal("a refused backup changed the target")
	}

	empty := filepath.Join(root, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Backup(empty, nil); err != nil {
		t.Fatalf("backup into an empty directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(empty, SyncMarkFile)); err != nil {
		t.Fatalf("backup into an empty directory: %v", err)
	}
	f(empty, ErrBackupTargetExists, "is not empty")
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".partial-") {
			t.Fatalf("left behind: %s", e.Name())
		}
	}

	db.backupMu.Lock() // another backup runs
	_, err := db.Backup(filepath.Join(root, "second"), nil)
	db.backupMu.Unlock()
	if !errors.Is(err, ErrBackupRunning) {
		t.Fatalf("a second backup at once: %v, want ErrBackupRunning", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Backup(filepath.Join(root, "closed"), nil); !errors.Is(err, allocator.ErrJournalClosed) {
		t.Fatalf("backup of a closed store: %v", err)
	}
}

// TestOpenReadOnly: a store open elsewhere, a missing directory, an empty
// one and a Pebble store that is not slotd's are refused, each with its
// own error naming the directory, and without a file made in it; a store
// opened read-only refuses writes.
func TestOpenReadOnly(t *testing.T) {
	db, dir := openWithOffice(t)
	if _, err := OpenReadOnly(dir, Options{}); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("OpenReadOnly of an open store: %v, want ErrInUse naming %s", err, dir)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	root := t.TempDir()
	f := func(path string, want error) {
		t.Helper()
		if _, err := OpenReadOnly(path, Options{}); !errors.Is(err, want) || !strings.Contains(err.Error(), path) {
			t.Fatalf("OpenReadOnly(%s) = %v, want %v naming the path", path, err, want)
		}
	}
	f(filepath.Join(root, "missing"), ErrNotStore)
	empty := filepath.Join(root, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	f(empty, ErrNotStore)
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Fatalf("OpenReadOnly left %s in an empty directory", entries[0].Name())
	}
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	f(file, ErrNotStore)
	foreign := filepath.Join(root, "foreign")
	pdb, err := pebble.Open(foreign, &pebble.Options{Logger: pebbleLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := pdb.Set([]byte("k"), []byte("v"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := pdb.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenReadOnly(foreign, Options{}); !errors.Is(err, ErrNotStore) {
		t.Fatalf("OpenReadOnly of a Pebble store that is not slotd's: %v, want ErrNotStore", err)
	}

	ro, err := OpenReadOnly(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if err := ro.Commit(holdChange(1)); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Commit on a read-only store: %v", err)
	}
	if _, err := ro.Sweep(t0); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Sweep on a read-only store: %v", err)
	}
	if _, err := ro.Backup(filepath.Join(root, "backup"), nil); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Backup of a read-only store: %v", err)
	}
	if _, err := Recover(ro, &collector{}, t0); err != nil {
		t.Fatalf("Recover of a read-only store: %v", err)
	}
}

// unwritableDir returns a directory this process may not create entries
// in: a fresh one without write permission, or, for root (whom
// permissions do not stop), /sys, where the kernel refuses new
// directories. "" when there is none to be had.
func unwritableDir(t *testing.T) string {
	if os.Geteuid() != 0 {
		dir := filepath.Join(t.TempDir(), "read-only")
		if err := os.Mkdir(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	probe := filepath.Join("/sys", ".slotd-probe")
	if err := os.Mkdir(probe, 0o700); err == nil {
		_ = os.Remove(probe)
		return ""
	}
	return "/sys"
}

// BenchmarkBackup1M: Backup of a store of a million confirmed bookings in
// tables (hard-linked into the backup) and the log of the last 10% not
// yet flushed (copied); then OpenReadOnly and Recover of the backup, as
// slotd verify and slotd dump read it.
func BenchmarkBackup1M(b *testing.B) {
	const n = 1_000_000
	db := benchOpen(b)
	writeBookings(b, db, n)
	// 10% more, left in the log and the memtable.
	enc := &encoder{}
	pb := db.pdb.NewBatch()
	for i := n; i < n+n/10; i++ {
		r := advanced(heldBooking(uint64(i+1)), allocator.StatusConfirmed, t0.UnixNano()+int64(i)+int64(time.Minute), "")
		if err := enc.stage(pb, &allocator.Change{Bookings: []*allocator.BookingRecord{r}}); err != nil {
			b.Fatal(err)
		}
	}
	if err := pb.Commit(pebble.Sync); err != nil {
		b.Fatal(err)
	}
	_ = pb.Close()
	root := b.TempDir()
	var st BackupStats
	var err error
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if st, err = db.Backup(filepath.Join(root, fmt.Sprint(i)), nil); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(st.Bytes)/(1<<20), "backupMiB")
	b.ReportMetric(float64(st.Files), "files")
	start := time.Now()
	ro, err := OpenReadOnly(st.Dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer ro.Close()
	var r countingRestorer
	if _, err := Recover(ro, &r, t0); err != nil || r.bookings.Load() != n+n/10 {
		b.Fatalf("recovered %d of %d: %v", r.bookings.Load(), n+n/10, err)
	}
	b.ReportMetric(time.Since(start).Seconds(), "readOnlyRecover-s")
}

// TestBackupOfReplicatedStore: a replicated store writes its batches
// without an fsync (W11); a backup holds every one applied before it was
// called, with the applied index, and the digest the live store had.
func TestBackupOfReplicatedStore(t *testing.T) {
	db, _ := openTest(t, Options{})
	staged, err := Stage(holdChange(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.ApplyEpoch(1, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ApplyStaged(2, staged); err != nil {
		t.Fatal(err)
	}
	for i := uint64(3); i <= 200; i++ {
		if err := db.ApplyEpoch(i, i); err != nil {
			t.Fatal(err)
		}
	}
	want, applied, err := db.StateDigest()
	if err != nil || applied != 200 {
		t.Fatalf("StateDigest: applied %d, %v", applied, err)
	}
	dir := filepath.Join(t.TempDir(), "backup")
	if _, err := db.Backup(dir, nil); err != nil {
		t.Fatal(err)
	}
	cp, err := OpenReadOnly(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	got, gotApplied, err := cp.StateDigest()
	if err != nil || gotApplied != applied || got != want {
		t.Fatalf("backup: applied %d digest %x (%v); the store had %d %x", gotApplied, got[:4], err, applied, want[:4])
	}
	if _, ok, err := loadHeld(cp, 1); !ok || err != nil {
		t.Fatalf("the backup lacks the staged booking: %v %v", ok, err)
	}
}
