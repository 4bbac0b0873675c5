package allocator

import (
	"encoding/binary"
	"sync"
	"testing"
)

func indexedBooking(id ID) *booking {
	b := &booking{}
	b.rec.Store(&BookingRecord{ID: id})
	return b
}

// seqID is an id that differs from the previous one in one low byte, as
// restored fixtures are: the index must not depend on ids being random.
func seqID(i int) ID {
	var id ID
	binary.BigEndian.PutUint32(id[:4], uint32(i))
	id[15] = 1
	return id
}

// TestBookingIndex: every id put is found, under its own booking, across
// growths; an id put twice is refused and keeps the first booking; an id
// never put is not found; each visits every booking once.
func TestBookingIndex(t *testing.T) {
	const n = 20000
	x := newBookingIndex()
	if x.get(seqID(1)) != nil || x.len() != 0 {
		t.Fatal("empty index finds something")
	}
	bs := make([]*booking, n)
	for i := range n {
		bs[i] = indexedBooking(seqID(i))
		if !x.put(seqID(i), bs[i]) {
			t.Fatalf("put %d refused", i)
		}
	}
	if x.put(seqID(7), indexedBooking(seqID(7))) {
		t.Fatal("second put of one id accepted")
	}
	for i := range n {
		if got := x.get(seqID(i)); got != bs[i] {
			t.Fatalf("get %d: %p, want %p", i, got, bs[i])
		}
	}
	if x.get(seqID(n)) != nil {
		t.Fatal("an id never put is found")
	}
	if x.len() != n {
		t.Fatalf("len %d, want %d", x.len(), n)
	}
	seen := make(map[*booking]bool, n)
	x.each(func(b *booking) bool {
		if seen[b] {
			t.Fatalf("each visits %s twice", b.rec.Load().ID)
		}
		seen[b] = true
		return true
	})
	if len(seen) != n {
		t.Fatalf("each visited %d, want %d", len(seen), n)
	}
}

// TestBookingIndexConcurrent: puts and gets from many goroutines (run
// under -race); every booking is found afterwards.
func TestBookingIndexConcurrent(t *testing.T) {
	const workers, per = 8, 3000
	x := newBookingIndex()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				k := w*per + i
				if !x.put(seqID(k), indexedBooking(seqID(k))) {
					t.Errorf("put %d refused", k)
					return
				}
				x.get(seqID(k * 7919 % (workers * per))) // another's id, put or not yet
				if x.get(seqID(k)) == nil {
					t.Errorf("get %d after put: nil", k)
					return
				}
			}
		})
	}
	wg.Wait()
	for k := range workers * per {
		if b := x.get(seqID(k)); b == nil || b.rec.Load().ID != seqID(k) {
			t.Fatalf("get %d after all puts: %v", k, b)
		}
	}
}
