package wal

import (
	"errors"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"slotd/allocator"
)

// TestRaftRegionKeepsToItsPrefix: the Raft log's region writes and reads
// only keys under 'r', its keys survive a restart beside the bookings, and
// Recover, which reads wal's own prefixes, is not disturbed by them.
func TestRaftRegionKeepsToItsPrefix(t *testing.T) {
	db, dir := openWithOffice(t)
	mustCommit(t, db, holdChange(1))
	r := db.RaftRegion()
	b := r.NewBatch()
	b.Set([]byte("r1"), []byte("one"))
	b.Set([]byte("r2"), []byte("two"))
	b.Set([]byte("r3"), []byte("three"))
	b.DeleteRange([]byte("r2"), []byte("r3"))
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	b.Close()
	for _, k := range [][]byte{[]byte("b1"), {}, []byte("s")} {
		func() {
			defer func() {
				if p := recover(); p == nil || !strings.HasPrefix(p.(string), "BUG:") {
					t.Fatalf("Set(%q) outside the region: panic %v, want BUG", k, p)
				}
			}()
			r.NewBatch().Set(k, nil)
		}()
	}

	db = reopen(t, db, dir)
	r = db.RaftRegion()
	var keys []string
	err := r.Scan([]byte{'r'}, []byte{'r' + 1}, func(it *pebble.Iterator) error {
		for ok := it.First(); ok; ok = it.Next() {
			keys = append(keys, string(it.Key()))
		}
		return nil
	})
	if err != nil || strings.Join(keys, ",") != "r1,r3" {
		t.Fatalf("region after restart: %q, %v; want r1,r3", keys, err)
	}
	var v string
	if found, err := r.Get([]byte("r3"), func(b []byte) error { v = string(b); return nil }); !found || err != nil || v != "three" {
		t.Fatalf("Get r3: %q %v %v", v, found, err)
	}
	var col collector
	st, err := Recover(db, &col, t0)
	if err != nil || st.Bookings != 1 || st.Offices != 1 {
		t.Fatalf("Recover beside the region: %+v, %v", st, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Get([]byte("r1"), func([]byte) error { return nil }); !errors.Is(err, allocator.ErrJournalClosed) {
		t.Fatalf("Get after Close: %v, want ErrJournalClosed", err)
	}
}
