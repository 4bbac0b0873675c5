package wal

import (
	"reflect"
	"testing"
	"time"

	"slotd/allocator"
)

func testWatch(auto bool) *allocator.WatchRecord {
	return &allocator.WatchRecord{ID: allocator.ID{1, 2, 3}, Applicant: "a-1", Service: "patent", Region: "moscow",
		From: 20000, To: 20010, AutoHold: auto, CreatedUnixNano: t0.UnixNano(), Active: true}
}

// Watches are stored while active, removed when they end, and come back
// at recovery; a watch.matched event keeps the watch it served.
func TestWatchPersistence(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	kept, ended := testWatch(true), testWatch(false)
	ended.ID = allocator.ID{9}
	ended.Office, ended.Region = "msk-1", ""
	if err := db.Commit(&allocator.Change{Watches: []*allocator.WatchRecord{kept, ended}}); err != nil {
		t.Fatal(err)
	}
	done := *ended
	done.Active = false
	ev := allocator.Event{Type: allocator.EventWatchMatched, AtUnixNano: 5, Office: "msk-1", Watch: &done, StartUnixNano: 77}
	if err := db.Commit(&allocator.Change{Watches: []*allocator.WatchRecord{&done}, Events: []allocator.Event{ev}}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var col collector
	st, err := Recover(db, &col, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if st.Watches != 1 || len(col.watches) != 1 || !reflect.DeepEqual(col.watches[0], kept) {
		t.Fatalf("recovered watches %+v", col.watches)
	}
	evs, err := db.ReadEvents(0, 10)
	if err != nil || len(evs) != 1 || evs[0].StartUnixNano != 77 || evs[0].Watch == nil || !reflect.DeepEqual(*evs[0].Watch, done) {
		t.Fatalf("event %+v %v", evs, err)
	}
}

// FuzzDecodeWatch: the watch decoder never panics, and what it accepts
// re-encodes to bytes that decode to the same watch.
func FuzzDecodeWatch(f *testing.F) {
	valid, _ := appendWatch(nil, testWatch(true))
	key := watchKey(nil, testWatch(true).ID)
	// a valid watch
	f.Add(valid)
	// truncated in the created time
	f.Add(valid[:len(valid)-2])
	// trailing byte
	f.Add(append(append([]byte(nil), valid...), 0))
	// unknown version
	f.Add(append([]byte{9}, valid[1:]...))
	// auto_hold flag out of range
	bad := append([]byte(nil), valid...)
	bad[len(bad)-10] = 7
	f.Add(bad)
	// empty value
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, v []byte) {
		w, err := decodeWatch(key, v, make(interner))
		if err != nil {
			return
		}
		again, err := appendWatch(nil, w)
		if err != nil {
			t.Fatalf("decoded %+v does not re-encode: %v", w, err)
		}
		w2, err := decodeWatch(key, again, make(interner))
		if err != nil || !reflect.DeepEqual(w, w2) {
			t.Fatalf("round trip changed %+v into %+v (%v)", w, w2, err)
		}
	})
}

// Number marks come back at recovery (allocator.SeqMark).
func TestSeqMarksPersist(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	marks := []allocator.SeqMark{{Office: "msk-1", Date: 20500, Seq: 7}, {Office: "msk-1", Date: -3, Seq: 2}}
	if err := db.Commit(&allocator.Change{SeqMarks: marks}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, _ = Open(dir, Options{})
	defer db.Close()
	var col collector
	if _, err := Recover(db, &col, time.Now()); err != nil {
		t.Fatal(err)
	}
	if len(col.marks) != 2 {
		t.Fatalf("marks %+v", col.marks)
	}
	got := map[allocator.SeqMark]bool{col.marks[0]: true, col.marks[1]: true}
	for _, m := range marks {
		if !got[m] {
			t.Fatalf("mark %+v lost: %+v", m, col.marks)
		}
	}
}
