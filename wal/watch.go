package wal

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"slotd/allocator"
)

// Watches are stored under prefixWatch by id while active; the change that
// ends a watch (matched or deleted) removes its key in the same batch.

const watchVersion byte = 1

func watchKey(dst []byte, id allocator.ID) []byte {
	return append(append(dst, prefixWatch), id[:]...)
}

// appendWatch appends the version-1 encoding of w.
func appendWatch(dst []byte, w *allocator.WatchRecord) ([]byte, error) {
	for _, f := range [...]struct{ what, s string }{{"watch applicant", w.Applicant}, {"watch service", w.Service}, {"watch office", w.Office}, {"watch region", w.Region}} {
		if err := checkText(f.what, f.s); err != nil {
			return dst, err
		}
	}
	if w.Applicant == "" || w.Service == "" || (w.Office == "") == (w.Region == "") {
		return dst, fmt.Errorf("%w: watch %s needs an applicant, a service and exactly one of office and region", ErrInvalidRecord, w.ID)
	}
	dst = append(dst, watchVersion)
	dst = append(dst, w.ID[:]...)
	dst = appendString(dst, w.Applicant)
	dst = appendString(dst, w.Service)
	dst = appendString(dst, w.Office)
	dst = appendString(dst, w.Region)
	dst = binary.AppendVarint(dst, int64(w.From))
	dst = binary.AppendVarint(dst, int64(w.To))
	var auto byte
	if w.AutoHold {
		auto = 1
	}
	dst = append(dst, auto)
	dst = binary.AppendVarint(dst, w.CreatedUnixNano)
	return dst, nil
}

// decodeWatchInto reads a version-1 watch from d (it consumes the rest).
func (d *decoder) decodeWatchInto(w *allocator.WatchRecord, in interner) {
	if ver := d.byte(); d.err == nil && ver != watchVersion {
		d.fail(fmt.Errorf("%w: watch version %d", errVersion, ver))
		return
	}
	copy(w.ID[:], d.bytes(16))
	w.Applicant = in.str(d.text("watch applicant"))
	w.Service = in.str(d.text("watch service"))
	w.Office = in.str(d.text("watch office"))
	w.Region = in.str(d.text("watch region"))
	from, to := d.varint(), d.varint()
	if from < -1<<31 || from > 1<<31-1 || to < -1<<31 || to > 1<<31-1 {
		d.fail(fmt.Errorf("%w: watch dates %d..%d", errFieldRange, from, to))
	}
	w.From, w.To = allocator.Date(from), allocator.Date(to)
	switch d.byte() {
	case 0:
	case 1:
		w.AutoHold = true
	default:
		d.fail(fmt.Errorf("%w: watch auto_hold flag", errFieldRange))
	}
	w.CreatedUnixNano = d.varint()
	w.Active = true
	if d.err == nil && (w.Applicant == "" || w.Service == "" || (w.Office == "") == (w.Region == "")) {
		d.fail(fmt.Errorf("%w: watch needs an applicant, a service and exactly one of office and region", errFieldRange))
	}
}

// decodeWatch decodes a stored watch and checks it belongs to key's id.
func decodeWatch(k, v []byte, in interner) (*allocator.WatchRecord, error) {
	d := decoder{b: v}
	w := &allocator.WatchRecord{}
	d.decodeWatchInto(w, in)
	if err := d.end(); err != nil {
		return nil, fmt.Errorf("%w: key %s: %w", ErrCorrupt, KeyString(k), err)
	}
	if len(k) != 17 || allocator.ID(k[1:]) != w.ID {
		return nil, fmt.Errorf("%w: key %s: watch id %s differs from the key", ErrCorrupt, KeyString(k), w.ID)
	}
	return w, nil
}

// stageWatches puts the watches of a change into b: active ones are set,
// ended ones deleted.
func (enc *encoder) stageWatches(b *pebble.Batch, ws []*allocator.WatchRecord) error {
	var err error
	for _, w := range ws {
		if w == nil {
			return fmt.Errorf("%w: nil watch in change", ErrInvalidRecord)
		}
		enc.key = watchKey(enc.key[:0], w.ID)
		if !w.Active {
			if err := b.Delete(enc.key, nil); err != nil {
				panic(fmt.Sprintf("BUG: wal: batch delete: %v", err))
			}
			continue
		}
		if enc.val, err = appendWatch(enc.val[:0], w); err != nil {
			return err
		}
		set(b, enc.key, enc.val)
	}
	return nil
}

// Number marks (allocator.SeqMark) are stored as keys only, one per mark,
// never overwritten: recovery takes the highest per (office, date).
//
//	'n' office id, 0x00, date (4 bytes BE, sign bit flipped), seq (4 bytes BE) → empty

func seqMarkKey(dst []byte, m allocator.SeqMark) []byte {
	dst = append(append(append(dst, prefixSeqMark), m.Office...), 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(m.Date)^1<<31)
	return binary.BigEndian.AppendUint32(dst, m.Seq)
}

func parseSeqMarkKey(k []byte) (allocator.SeqMark, bool) {
	if len(k) < 1+1+1+8 || k[0] != prefixSeqMark || k[len(k)-9] != 0 {
		return allocator.SeqMark{}, false
	}
	tail := k[len(k)-8:]
	return allocator.SeqMark{
		Office: string(k[1 : len(k)-9]),
		Date:   allocator.Date(binary.BigEndian.Uint32(tail[:4]) ^ 1<<31),
		Seq:    binary.BigEndian.Uint32(tail[4:]),
	}, true
}
