package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// heartbeat is a small raftpb.Message encoding for frames of the tests.
func heartbeat(tb testing.TB, from, to, term uint64) []byte {
	tb.Helper()
	b, err := proto.Marshal(&pb.Message{Type: pb.MsgHeartbeat.Enum(), From: new(from), To: new(to), Term: new(term)})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestFrameRoundTrip: what appendFrame writes, decodeFrame reads back —
// the ids, every message's group and bytes, in order — and a frame cut
// short or carrying another version is refused.
func TestFrameRoundTrip(t *testing.T) {
	msgs := []rawMessage{
		{group: 1, b: heartbeat(t, 1, 2, 5)},
		{group: 300, b: nil}, // a group needing a two-byte varint, an empty message
		{group: 1<<64 - 1, b: bytes.Repeat([]byte{0xab}, 200)},
	}
	b := appendFrame(nil, 7, 9, msgs)
	if want := frameBytes(len(msgs), messageFrameBytes(1, len(msgs[0].b))+messageFrameBytes(300, 0)+messageFrameBytes(1<<64-1, 200)); len(b) != want {
		t.Fatalf("frame of %d bytes, frameBytes says %d", len(b), want)
	}
	f, err := decodeFrame(b)
	if err != nil {
		t.Fatal(err)
	}
	if f.from != 7 || f.to != 9 || len(f.msgs) != len(msgs) {
		t.Fatalf("decoded %d → %d with %d messages", f.from, f.to, len(f.msgs))
	}
	for i := range msgs {
		if f.msgs[i].group != msgs[i].group || !bytes.Equal(f.msgs[i].b, msgs[i].b) {
			t.Fatalf("message %d: group %d %x, want %d %x", i, f.msgs[i].group, f.msgs[i].b, msgs[i].group, msgs[i].b)
		}
	}
	for cut := range len(b) {
		if _, err := decodeFrame(b[:cut]); !errors.Is(err, errFrame) {
			t.Fatalf("frame cut to %d of %d bytes: %v, want errFrame", cut, len(b), err)
		}
	}
	other := bytes.Clone(b)
	other[frameLenBytes] = frameVersion + 1
	if _, err := decodeFrame(other); !errors.Is(err, errFrame) {
		t.Fatalf("version %d: %v, want errFrame", frameVersion+1, err)
	}
}

// FuzzDecodeFrame: any bytes either fail to decode with errFrame or decode
// to a frame that encodes back to the same bytes (one encoding per frame),
// and never panic; the messages of a decoded frame go through the
// protobuf decoder as the transport's reader does.
func FuzzDecodeFrame(f *testing.F) {
	hb := heartbeat(f, 1, 2, 3)
	frameOf := func(from, to uint64, msgs ...rawMessage) []byte { return appendFrame(nil, from, to, msgs) }
	// A keepalive: a frame without messages.
	f.Add(frameOf(1, 2))
	// One heartbeat of group 1.
	f.Add(frameOf(1, 2, rawMessage{group: 1, b: hb}))
	// Messages of several groups, one of a multi-byte group id, one empty.
	f.Add(frameOf(3, 1, rawMessage{group: 4, b: hb}, rawMessage{group: 1 << 20, b: hb}, rawMessage{group: 2}))
	// A message whose bytes are not a protobuf message.
	f.Add(frameOf(1, 2, rawMessage{group: 1, b: []byte{0xff, 0xff, 0xff}}))
	// Nothing, and a length prefix alone.
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 18})
	// A length prefix that does not match the bytes that follow.
	long := frameOf(1, 2)
	binary.BigEndian.PutUint32(long, 200)
	f.Add(long)
	// A version this release does not know.
	v2 := frameOf(1, 2)
	v2[frameLenBytes] = 2
	f.Add(v2)
	// A count of messages far beyond the bytes that follow.
	huge := append(frameOf(1, 2)[:frameFixedBytes], 0xff, 0xff, 0xff, 0x0f)
	binary.BigEndian.PutUint32(huge, uint32(len(huge)-frameLenBytes))
	f.Add(huge)
	// A count in a longer varint than it needs (0 as 0x80 0x00).
	overlong := append(frameOf(1, 2)[:frameFixedBytes], 0x80, 0x00)
	binary.BigEndian.PutUint32(overlong, uint32(len(overlong)-frameLenBytes))
	f.Add(overlong)
	// A message of group 0, which is reserved.
	g0 := append(frameOf(1, 2)[:frameFixedBytes], 1, 0, 0)
	binary.BigEndian.PutUint32(g0, uint32(len(g0)-frameLenBytes))
	f.Add(g0)
	// Trailing bytes after the last message.
	trail := append(frameOf(1, 2, rawMessage{group: 1, b: hb}), 0)
	binary.BigEndian.PutUint32(trail, uint32(len(trail)-frameLenBytes))
	f.Add(trail)

	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := decodeFrame(b)
		if err != nil {
			if !errors.Is(err, errFrame) {
				t.Fatalf("error %v is not errFrame", err)
			}
			return
		}
		if again := appendFrame(nil, fr.from, fr.to, fr.msgs); !bytes.Equal(again, b) {
			t.Fatalf("decoded %x\nencodes back to %x", b, again)
		}
		for _, m := range fr.msgs {
			_ = proto.Unmarshal(m.b, &pb.Message{})
		}
	})
}
