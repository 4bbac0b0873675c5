package allocator

import (
	"encoding/binary"
	"sync"
)

// bookingIndex maps ids to bookings: every booking in memory, archive
// included, and nothing is ever removed. Safe for concurrent use.
//
// It is an open-addressing table per shard whose slots hold only the
// *booking: the id is read from the booking's record, which never changes
// it. A map[ID]*booking stores the 16-byte id again in every slot; here a
// slot costs its pointer and one byte of hash (tags), which spares most
// probes the record load.
type bookingIndex struct {
	shards [indexShards]indexShard
}

const (
	indexShards    = 64
	indexMinSlots  = 64
	indexTagShift  = 56 // the hash's top byte is the tag
	indexSlotShift = 6  // the hash's low bits pick the shard
)

// The shard bits and the slot bits of a hash must not overlap.
const _ = uint(1<<indexSlotShift - indexShards)

type indexShard struct {
	mu    sync.RWMutex
	slots []*booking // nil = empty; len is 0 or a power of two
	tags  []uint8    // the tag of each filled slot
	n     int
	_     [48]byte // a shard per 128 bytes: no false sharing
}

func newBookingIndex() *bookingIndex { return &bookingIndex{} }

// idHash mixes both halves of an id. Ids made by the engine are random, but
// restored ones come from the journal as they are, and the table must not
// depend on that.
func idHash(id ID) uint64 {
	h := binary.LittleEndian.Uint64(id[:8])*0x9e3779b97f4a7c15 ^ binary.LittleEndian.Uint64(id[8:])
	h ^= h >> 32
	h *= 0xd6e8feb86659fd93
	return h ^ h>>32
}

func (x *bookingIndex) shard(h uint64) *indexShard { return &x.shards[h%indexShards] }

func (x *bookingIndex) get(id ID) *booking {
	h := idHash(id)
	sh := x.shard(h)
	sh.mu.RLock()
	b, _ := sh.find(id, h)
	sh.mu.RUnlock()
	return b
}

// put adds b under id; false if id is taken.
func (x *bookingIndex) put(id ID, b *booking) bool {
	h := idHash(id)
	sh := x.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if (sh.n+1)*8 > len(sh.slots)*7 { // keep the load at most 7/8
		sh.grow()
	}
	found, i := sh.find(id, h)
	if found != nil {
		return false
	}
	sh.slots[i], sh.tags[i] = b, uint8(h>>indexTagShift)
	sh.n++
	return true
}

// find returns the booking of id, or nil and the empty slot where it would
// go. Caller holds mu; the table has an empty slot.
func (sh *indexShard) find(id ID, h uint64) (*booking, int) {
	if len(sh.slots) == 0 {
		return nil, -1
	}
	mask := len(sh.slots) - 1
	tag := uint8(h >> indexTagShift)
	for i := int(h>>indexSlotShift) & mask; ; i = (i + 1) & mask {
		b := sh.slots[i]
		if b == nil {
			return nil, i
		}
		if sh.tags[i] == tag && b.rec.Load().ID == id {
			return b, i
		}
	}
}

// grow doubles the table (or makes the first one) and places every booking
// again. Caller holds mu.
func (sh *indexShard) grow() {
	old := sh.slots
	size := max(2*len(old), indexMinSlots)
	sh.slots, sh.tags = make([]*booking, size), make([]uint8, size)
	for _, b := range old {
		if b != nil {
			id := b.rec.Load().ID
			h := idHash(id)
			_, i := sh.find(id, h)
			sh.slots[i], sh.tags[i] = b, uint8(h>>indexTagShift)
		}
	}
}

// len returns the number of bookings.
func (x *bookingIndex) len() int {
	n := 0
	for i := range x.shards {
		sh := &x.shards[i]
		sh.mu.RLock()
		n += sh.n
		sh.mu.RUnlock()
	}
	return n
}

// each calls f for every booking until f returns false. It does not hold a
// lock while f runs.
func (x *bookingIndex) each(f func(*booking) bool) {
	for i := range x.shards {
		sh := &x.shards[i]
		sh.mu.RLock()
		list := make([]*booking, 0, sh.n)
		for _, b := range sh.slots {
			if b != nil {
				list = append(list, b)
			}
		}
		sh.mu.RUnlock()
		for _, b := range list {
			if !f(b) {
				return
			}
		}
	}
}
