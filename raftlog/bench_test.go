package raftlog

import (
	"math/rand/v2"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
)

// BenchmarkAppendReady stores the Ready batch of a node hosting 16 groups
// that each append 8 entries of 200 bytes and a hard state: one Append,
// one fsync, on the disk under the test's temporary directory. It reports
// entries made durable per second and the bytes Pebble's log takes per
// entry (keys, values and the batch's framing; the hard states' share
// included), and the fsyncs of Pebble's log per batch (one). Every 64 batches each group's log is compacted to its last
// 512 entries, outside the timer, as the apply loop will keep it short.
func BenchmarkAppendReady(b *testing.B) {
	const groups, perGroup, payloadBytes = 16, 8, 200
	o := openAt(b, nil, b.TempDir(), Options{})
	defer o.close(b)
	rng := rand.New(rand.NewPCG(1, 1))
	payload := entry(rng, 1, 1, payloadBytes).Data
	next := uint64(1)
	updates := make([]Update, groups)
	syncsBefore := o.db.Stats().WALSyncs
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; b.Loop(); n++ {
		for g := range updates {
			ents := make([]*pb.Entry, perGroup)
			for i := range ents {
				ents[i] = &pb.Entry{Index: new(next + uint64(i)), Term: new(uint64(1)), Data: payload}
			}
			updates[g] = Update{Group: uint64(g) + 1, Entries: ents, HardState: hardState(1, 1, next+perGroup-1)}
		}
		if err := o.s.Append(updates); err != nil {
			b.Fatal(err)
		}
		next += perGroup
		if n%64 == 63 && next > 512 {
			b.StopTimer()
			for g := uint64(1); g <= groups; g++ {
				if err := o.s.Compact(g, next-512); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
		}
	}
	syncs := o.db.Stats().WALSyncs - syncsBefore
	st := o.s.Stats()
	b.ReportMetric(float64(syncs)/float64(st.Appends), "fsyncs/batch")
	b.ReportMetric(float64(st.AppendedEntries)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(st.AppendedBytes)/float64(st.AppendedEntries), "B/entry")
}
