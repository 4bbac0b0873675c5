package raftlog

// Keys and values. The layout is drawn in the package doc; this file is the
// only place that reads or writes it. Changing anything here breaks data
// already on disk: add a new version byte and keep decoding the old one.

import (
	"encoding/binary"
	"errors"
	"fmt"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Kinds: the byte after the group id. Entries of one group are contiguous
// in key order, so that one range deletion removes any run of them.
const (
	kindMembership   byte = 'c'
	kindSnapshotData byte = 'd'
	kindEntry        byte = 'e'
	kindFormat       byte = 'f' // group 0 only
	kindHardState    byte = 'h'
	kindSnapshotMeta byte = 's'
	kindTruncated    byte = 't'
)

// formatGroup is the group id reserved for the store's own keys. Raft
// uses 0 for "none" too; the cluster numbers its groups from 1.
const formatGroup = 0

// Value versions: the first byte of every value this package defines.
// Hard states and entries are raftpb's protobuf encoding as it is, which
// protobuf keeps readable across versions of raftpb, without a version
// byte.
const (
	formatVersion       byte = 1 // value of the format key
	truncatedVersion    byte = 1
	snapshotMetaVersion byte = 1
	membershipVersion   byte = 1
)

// Snapshot data forms (in the snapshot metadata value): where the data of
// the group's latest snapshot is.
const (
	// dataInline: the data is the value of the group's kindSnapshotData key.
	dataInline byte = 1
)

const (
	groupKeyBytes = 1 + 8 + 1         // prefix, group, kind
	entryKeyBytes = groupKeyBytes + 8 // then the index
)

// errTruncated and friends describe corruption; callers wrap them with the key.
var (
	errTruncated   = errors.New("value truncated")
	errTrailing    = errors.New("trailing bytes after value")
	errVersion     = errors.New("unknown value version")
	errKeyMismatch = errors.New("value does not belong to its key")
)

// ---- keys ----

// groupKey is the key of one kind of record of group g, or with kind 0 the
// lowest key of the group.
func groupKey(dst []byte, prefix byte, g uint64, kind byte) []byte {
	dst = append(dst, prefix)
	dst = binary.BigEndian.AppendUint64(dst, g)
	if kind != 0 {
		dst = append(dst, kind)
	}
	return dst
}

// entryKey is the key of group g's entry at index i.
func entryKey(dst []byte, prefix byte, g, i uint64) []byte {
	dst = groupKey(dst, prefix, g, kindEntry)
	return binary.BigEndian.AppendUint64(dst, i)
}

// entriesEnd is the smallest key above every entry key of group g.
func entriesEnd(dst []byte, prefix byte, g uint64) []byte {
	return groupKey(dst, prefix, g, kindEntry+1)
}

// parseKey splits a key of the region. index is set for entry keys only.
func parseKey(prefix byte, k []byte) (g uint64, kind byte, index uint64, ok bool) {
	if len(k) < groupKeyBytes || k[0] != prefix {
		return 0, 0, 0, false
	}
	g, kind = binary.BigEndian.Uint64(k[1:9]), k[9]
	switch {
	case kind == kindEntry && len(k) == entryKeyBytes:
		return g, kind, binary.BigEndian.Uint64(k[groupKeyBytes:]), true
	case kind != kindEntry && len(k) == groupKeyBytes:
		return g, kind, 0, true
	}
	return 0, 0, 0, false
}

// keyString names a key for people: "raft/7/entry/42", "raft/7/hardstate".
// Errors that concern a stored value name its key this way.
func keyString(prefix byte, k []byte) string {
	g, kind, i, ok := parseKey(prefix, k)
	if !ok {
		return fmt.Sprintf("%x", k)
	}
	switch kind {
	case kindEntry:
		return fmt.Sprintf("raft/%d/entry/%d", g, i)
	case kindHardState:
		return fmt.Sprintf("raft/%d/hardstate", g)
	case kindTruncated:
		return fmt.Sprintf("raft/%d/truncated", g)
	case kindSnapshotMeta:
		return fmt.Sprintf("raft/%d/snapshot", g)
	case kindSnapshotData:
		return fmt.Sprintf("raft/%d/snapshot-data", g)
	case kindFormat:
		return fmt.Sprintf("raft/%d/format", g)
	}
	return fmt.Sprintf("raft/%d/%x", g, kind)
}

// ---- values ----

var marshalOpts = proto.MarshalOptions{}

// appendProto appends m's protobuf encoding. raftpb's messages have no
// field that fails to encode.
func appendProto(dst []byte, m proto.Message) []byte {
	out, err := marshalOpts.MarshalAppend(dst, m)
	if err != nil {
		panic(fmt.Sprintf("BUG: raftlog: cannot encode %T: %v", m, err))
	}
	return out
}

// truncated is the index and term of the last entry removed from the log
// (by Compact or a snapshot): the first index is index+1 and Term answers
// for index. Zero is the state of a new log.
type truncated struct{ index, term uint64 }

func appendTruncated(dst []byte, t truncated) []byte {
	dst = append(dst, truncatedVersion)
	dst = binary.AppendUvarint(dst, t.index)
	return binary.AppendUvarint(dst, t.term)
}

func decodeTruncated(v []byte) (truncated, error) {
	if len(v) == 0 || v[0] != truncatedVersion {
		return truncated{}, errVersion
	}
	v = v[1:]
	var t truncated
	var n int
	if t.index, n = binary.Uvarint(v); n <= 0 {
		return truncated{}, errTruncated
	}
	v = v[n:]
	if t.term, n = binary.Uvarint(v); n <= 0 {
		return truncated{}, errTruncated
	}
	if len(v) != n {
		return truncated{}, errTrailing
	}
	return t, nil
}

// snapshotMeta is the stored metadata of a group's latest snapshot.
type snapshotMeta struct {
	meta      *pb.SnapshotMetadata
	form      byte   // where the data is: dataInline
	dataBytes uint64 // length of the data
}

func appendSnapshotMeta(dst []byte, m snapshotMeta) []byte {
	dst = append(dst, snapshotMetaVersion, m.form)
	dst = binary.AppendUvarint(dst, m.dataBytes)
	return appendProto(dst, m.meta)
}

func decodeSnapshotMeta(v []byte) (snapshotMeta, error) {
	if len(v) < 2 || v[0] != snapshotMetaVersion {
		return snapshotMeta{}, errVersion
	}
	m := snapshotMeta{form: v[1], meta: &pb.SnapshotMetadata{}}
	if m.form != dataInline {
		return snapshotMeta{}, fmt.Errorf("unknown snapshot data form %d", m.form)
	}
	var n int
	if m.dataBytes, n = binary.Uvarint(v[2:]); n <= 0 {
		return snapshotMeta{}, errTruncated
	}
	if err := proto.Unmarshal(v[2+n:], m.meta); err != nil {
		return snapshotMeta{}, err
	}
	m.meta = pb.EnsureSnapshotMetadata(m.meta)
	return m, nil
}

// appendMembership encodes m: version, uvarint index, uvarint length and
// the ConfState's protobuf, then the context to the end.
func appendMembership(dst []byte, m *Membership) []byte {
	dst = append(dst, membershipVersion)
	dst = binary.AppendUvarint(dst, m.Index)
	cs := appendProto(nil, pb.EnsureConfState(m.ConfState))
	dst = binary.AppendUvarint(dst, uint64(len(cs)))
	dst = append(dst, cs...)
	return append(dst, m.Context...)
}

func decodeMembership(v []byte) (*Membership, error) {
	if len(v) == 0 || v[0] != membershipVersion {
		return nil, errVersion
	}
	v = v[1:]
	m := &Membership{ConfState: &pb.ConfState{}}
	var n int
	if m.Index, n = binary.Uvarint(v); n <= 0 {
		return nil, errTruncated
	}
	v = v[n:]
	size, n := binary.Uvarint(v)
	if n <= 0 || uint64(len(v)-n) < size {
		return nil, errTruncated
	}
	v = v[n:]
	if err := proto.Unmarshal(v[:size], m.ConfState); err != nil {
		return nil, err
	}
	m.ConfState = pb.EnsureConfState(m.ConfState)
	m.Context = append([]byte(nil), v[size:]...)
	return m, nil
}

func decodeHardState(v []byte) (*pb.HardState, error) {
	hs := &pb.HardState{}
	if err := proto.Unmarshal(v, hs); err != nil {
		return nil, err
	}
	return hs, nil
}

// decodeEntry decodes the entry stored under index i and checks that it
// is entry i. Raft's entries all have a term of at least 1.
func decodeEntry(v []byte, i uint64) (*pb.Entry, error) {
	e := &pb.Entry{}
	if err := proto.Unmarshal(v, e); err != nil {
		return nil, err
	}
	if e.GetIndex() != i || e.GetTerm() == 0 {
		return nil, fmt.Errorf("%w: entry of index %d term %d", errKeyMismatch, e.GetIndex(), e.GetTerm())
	}
	return e, nil
}

// entryTerm reads the term of the entry stored under index i without
// decoding the rest (its data is most of it).
func entryTerm(v []byte, i uint64) (uint64, error) {
	var term, index uint64
	for len(v) > 0 {
		num, typ, n := protowire.ConsumeTag(v)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		v = v[n:]
		if typ == protowire.VarintType && (num == 2 || num == 3) {
			x, n := protowire.ConsumeVarint(v)
			if n < 0 {
				return 0, protowire.ParseError(n)
			}
			if num == 2 {
				term = x
			} else {
				index = x
			}
			v = v[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, v)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		v = v[n:]
	}
	if index != i || term == 0 {
		return 0, fmt.Errorf("%w: entry of index %d term %d", errKeyMismatch, index, term)
	}
	return term, nil
}
