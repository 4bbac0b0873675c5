package replica

import (
	"errors"
	"strings"
	"testing"

	"slotd/cluster"
	"slotd/wal"
)

// Format invariant V4: an entry of a kind this release does not know —
// a newer release's — stops the apply with cluster.ErrNewerFormat naming
// the kind, and nothing of it reaches the store; a kind 0 is damage.
func TestUnknownKindIsANewerFormat(t *testing.T) {
	db, err := wal.Open(t.TempDir(), wal.Options{CacheBytes: 1 << 20, MemTableBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r, err := New(Config{Self: 1, Stores: map[uint64]*wal.DB{1: db}})
	if err != nil {
		t.Fatal(err)
	}
	const unknown = 0xfe
	err = r.Apply(1, []cluster.Entry{{Index: 2, Term: 1, Data: []byte{unknown, 1, 2, 3}}})
	if !errors.Is(err, cluster.ErrNewerFormat) || !strings.Contains(err.Error(), "kind 254") {
		t.Fatalf("an entry of kind %d: %v, want cluster.ErrNewerFormat naming the kind", unknown, err)
	}
	if applied, _, err := db.Applied(); err != nil || applied != 0 {
		t.Fatalf("the store's applied index after the refusal: %d %v, want 0", applied, err)
	}
	err = r.Apply(1, []cluster.Entry{{Index: 2, Term: 1, Data: []byte{0}}})
	if !errors.Is(err, cluster.ErrCorruptEntry) {
		t.Fatalf("an entry of kind 0: %v, want cluster.ErrCorruptEntry", err)
	}
}
