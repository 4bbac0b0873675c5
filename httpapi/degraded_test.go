package httpapi

// The degraded state over the real journal: a storage failure the engine
// does not see itself still shows in the metric, /readyz and the log.

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"slotd/allocator"
	"slotd/api"
	"slotd/wal"
)

// newWALEnv starts a server whose engine, idempotency store and event
// feed are one wal.DB on fs, with office-a.
func newWALEnv(t *testing.T, fs vfs.FS) (*env, *wal.DB) {
	t.Helper()
	db, err := wal.Open("db", wal.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	eng, err := allocator.New(allocator.Config{Journal: db})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.PutOffice(t0, testOffice("office-a"), allocator.Meta{Actor: "setup"}); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config) { c.Engine, c.Idempotency, c.Events = eng, db, db })
	e.eng = eng
	return e, db
}

// wantDegraded checks that the metric, /readyz and the log all say
// degraded, and that writes are refused.
func wantDegraded(t *testing.T, e *env, cause string) {
	t.Helper()
	admin := e.srv.AdminHandler()
	if _, body := scrape(t, admin, "/metrics"); !strings.Contains(body, "\nslotd_engine_degraded 1\n") {
		t.Errorf("/metrics does not say degraded:\n%s", grepLines(body, "slotd_engine_degraded"))
	}
	if code, body := scrape(t, admin, "/readyz"); code != 503 || !strings.HasPrefix(body, "degraded: ") || !strings.Contains(body, cause) {
		t.Errorf("/readyz answers %d %q, want 503 degraded: …%s…", code, body, cause)
	}
	if n := e.logs.FilterMessage(msgDegraded).Len(); n != 1 {
		t.Errorf("%d log lines %q, want 1", n, msgDegraded)
	}
	want(t, e.post("/v1/bookings", keyPortal, holdJSON("office-a", "patent", "a-late", at(2, 9, 0))), 503, api.CodeDegraded)
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestDefectStorageFailureHiddenFromDegradedAlert: a storage failure that
// no engine commit saw — a failed write of the idempotency store, a
// damaged block of the event feed — used to stop writes (503) while
// slotd_engine_degraded stayed 0 and /readyz 200, so the degraded alert
// never fired when every client sent an Idempotency-Key. Now every
// storage failure is the one degraded state.
func TestDefectStorageFailureHiddenFromDegradedAlert(t *testing.T) {
	t.Run("idempotency store write", func(t *testing.T) {
		mem := vfs.NewCrashableMem()
		if err := mem.MkdirAll("db", 0o755); err != nil {
			t.Fatal(err)
		}
		var full atomic.Bool
		e, _ := newWALEnv(t, errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
			if full.Load() && strings.HasSuffix(op.Path, ".log") && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
				return fmt.Errorf("no space left on device: %w", errorfs.ErrInjected)
			}
			return nil
		})))
		e.mustHold("office-a", "patent", "a-1", at(1, 9, 0), false)
		full.Store(true)
		// A refusal changes nothing; only its stored first answer is
		// written, and that write fails. The answer still goes out.
		r := e.post("/v1/bookings", keyPortal, holdJSON("office-nowhere", "patent", "a-2", at(1, 9, 0)), "Idempotency-Key", "k-1")
		want(t, r, 404, api.CodeNotFound)
		wantDegraded(t, e, "idempotency store write")
		// Every later request with a key is refused at the store's read.
		want(t, e.post("/v1/bookings", keyPortal, holdJSON("office-a", "patent", "a-3", at(1, 10, 0)), "Idempotency-Key", "k-2"), 503, api.CodeDegraded)
	})

	t.Run("damaged event block", func(t *testing.T) {
		mem := vfs.NewMem()
		if err := mem.MkdirAll("db", 0o755); err != nil {
			t.Fatal(err)
		}
		e, db := newWALEnv(t, mem)
		for i := range 20 {
			e.mustHold("office-a", "patent", fmt.Sprintf("applicant-%02d", i), at(1, 9+i/8, 15*(i%4)), true)
		}
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
		// Events sort after bookings: the last copy of an applicant's id
		// is in an event (which embeds its booking).
		damageTables(t, mem, "db", []byte("applicant-1"))
		r := e.get("/v1/events?after=0&limit=100", keyPortal)
		want(t, r, 503, api.CodeDegraded)
		wantDegraded(t, e, "event feed read")
	})
}

// damageTables flips one byte of every table in dir where pattern last
// occurs, as a disk's bad sector would.
func damageTables(t *testing.T, fs vfs.FS, dir string, pattern []byte) {
	t.Helper()
	names, err := fs.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	damaged := 0
	for _, n := range names {
		if !strings.HasSuffix(n, ".sst") {
			continue
		}
		name := fs.PathJoin(dir, n)
		f, err := fs.OpenReadWrite(name, vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(f)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.LastIndex(data, pattern); i >= 0 {
			if _, err := f.WriteAt([]byte{data[i] ^ 0xff}, int64(i)); err != nil {
				t.Fatal(err)
			}
			damaged++
		}
		_ = f.Close()
	}
	if damaged == 0 {
		t.Fatalf("no table in %v holds %q", names, pattern)
	}
}
