package cluster

// The transport's frame codec: what one write on a peer connection
// carries. The package doc draws the format; changing it breaks
// mixed-version clusters.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

const (
	// frameVersion is the version byte of every frame this release writes
	// and the only one it reads.
	frameVersion = 1
	// frameLenBytes is the size of the length prefix.
	frameLenBytes = 4
	// frameFixedBytes is the prefix, the version byte and the two node ids.
	frameFixedBytes = frameLenBytes + 1 + 8 + 8
	// frameBytesMax bounds a whole frame, prefix included. It is part of
	// the wire format: a receiver refuses a longer frame, so every release
	// of a cluster must agree on it. It holds the largest append message
	// raft sends (raftMsgBytesMax plus one entry of ProposalBytesMax, see
	// Config) with room to spare.
	frameBytesMax = 4 << 20
	// messageBytesMax bounds one message in a frame: a frame of one
	// message, with its group and length varints.
	messageBytesMax = frameBytesMax - frameFixedBytes - 3*binary.MaxVarintLen64
)

// errFrame wraps every reason a frame is refused.
var errFrame = errors.New("cluster: malformed frame")

// rawMessage is one message of a frame as it travels: its group and its
// raftpb.Message encoding. b aliases the frame it was decoded from.
type rawMessage struct {
	group uint64
	b     []byte
}

// frame is a decoded frame: who sent it to whom, and its messages in the
// order they were sent. A frame without messages is a keepalive.
type frame struct {
	from, to uint64
	msgs     []rawMessage
}

// appendFrame appends the frame from → to carrying msgs to dst. The caller
// keeps the frame within frameBytesMax (frameBytes tells its size); a
// group 0 is a programmer error.
func appendFrame(dst []byte, from, to uint64, msgs []rawMessage) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, frameVersion)
	dst = binary.BigEndian.AppendUint64(dst, from)
	dst = binary.BigEndian.AppendUint64(dst, to)
	dst = binary.AppendUvarint(dst, uint64(len(msgs)))
	for _, m := range msgs {
		if m.group == 0 {
			panic("BUG: cluster: a message of group 0")
		}
		dst = binary.AppendUvarint(dst, m.group)
		dst = binary.AppendUvarint(dst, uint64(len(m.b)))
		dst = append(dst, m.b...)
	}
	n := len(dst) - start
	if n > frameBytesMax {
		panic(fmt.Sprintf("BUG: cluster: a frame of %d bytes, the limit is %d", n, frameBytesMax))
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(n-frameLenBytes))
	return dst
}

// messageFrameBytes is what a message of group g and n bytes adds to a
// frame.
func messageFrameBytes(g uint64, n int) int { return uvarintLen(g) + uvarintLen(uint64(n)) + n }

// frameBytes is the size of a frame of count messages that together add
// msgBytes (messageFrameBytes each).
func frameBytes(count, msgBytes int) int {
	return frameFixedBytes + uvarintLen(uint64(count)) + msgBytes
}

// frameBodyBytes checks a frame's length prefix and returns the number of
// bytes that follow it.
func frameBodyBytes(prefix [frameLenBytes]byte) (int, error) {
	n := binary.BigEndian.Uint32(prefix[:])
	if n < frameFixedBytes-frameLenBytes+1 || n > frameBytesMax-frameLenBytes {
		return 0, fmt.Errorf("%w: length %d outside %d..%d", errFrame, n, frameFixedBytes-frameLenBytes+1, frameBytesMax-frameLenBytes)
	}
	return int(n), nil
}

// decodeFrame decodes the whole frame b, its length prefix included. It
// accepts exactly what appendFrame writes: any frame it returns encodes
// back to b, byte for byte (FuzzDecodeFrame). The messages alias b.
func decodeFrame(b []byte) (frame, error) {
	var f frame
	if len(b) < frameLenBytes {
		return f, fmt.Errorf("%w: %d bytes, shorter than its length prefix", errFrame, len(b))
	}
	n, err := frameBodyBytes([frameLenBytes]byte(b))
	if err != nil {
		return f, err
	}
	if n != len(b)-frameLenBytes {
		return f, fmt.Errorf("%w: length prefix %d, %d bytes follow", errFrame, n, len(b)-frameLenBytes)
	}
	f.from = binary.BigEndian.Uint64(b[frameLenBytes+1:])
	f.to = binary.BigEndian.Uint64(b[frameLenBytes+9:])
	switch v := b[frameLenBytes]; {
	case v > frameVersion:
		// Every version keeps the version byte and the two ids where
		// version 1 has them, so the refusal can name its sender (V2).
		return f, fmt.Errorf("%w: %w: frame version %d from node %d, this release reads versions up to %d: node %d runs a newer release that writes a newer format",
			errFrame, ErrNewerFormat, v, f.from, frameVersion, f.from)
	case v != frameVersion:
		return f, fmt.Errorf("%w: version %d, this release reads %d", errFrame, v, frameVersion)
	}
	rest := b[frameFixedBytes:]
	count, k, err := readUvarint(rest)
	if err != nil {
		return f, fmt.Errorf("%w: message count: %w", errFrame, err)
	}
	rest = rest[k:]
	// Each message takes at least two bytes (its group and its length),
	// so a count beyond that is a lie: refuse it before allocating.
	if count > uint64(len(rest)/2) {
		return f, fmt.Errorf("%w: %d messages in %d bytes", errFrame, count, len(rest))
	}
	if count > 0 {
		f.msgs = make([]rawMessage, count)
	}
	for i := range f.msgs {
		g, k, err := readUvarint(rest)
		if err != nil {
			return f, fmt.Errorf("%w: message %d: group: %w", errFrame, i, err)
		}
		if g == 0 {
			return f, fmt.Errorf("%w: message %d: group 0", errFrame, i)
		}
		rest = rest[k:]
		size, k, err := readUvarint(rest)
		if err != nil {
			return f, fmt.Errorf("%w: message %d: length: %w", errFrame, i, err)
		}
		rest = rest[k:]
		if size > uint64(len(rest)) {
			return f, fmt.Errorf("%w: message %d: %d bytes, %d left", errFrame, i, size, len(rest))
		}
		f.msgs[i] = rawMessage{group: g, b: rest[:size:size]}
		rest = rest[size:]
	}
	if len(rest) != 0 {
		return f, fmt.Errorf("%w: %d bytes after the last message", errFrame, len(rest))
	}
	return f, nil
}

// readUvarint reads a uvarint in its shortest form: a longer form of the
// same number is refused, so that a frame has one encoding.
func readUvarint(b []byte) (uint64, int, error) {
	v, n := binary.Uvarint(b)
	switch {
	case n == 0:
		return 0, 0, errors.New("truncated varint")
	case n < 0:
		return 0, 0, errors.New("varint overflows 64 bits")
	case n != uvarintLen(v):
		return 0, 0, fmt.Errorf("varint %d in %d bytes, not its shortest form", v, n)
	}
	return v, n, nil
}

// uvarintLen is the size of v as a shortest uvarint.
func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }
