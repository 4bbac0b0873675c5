package wal

// The office value. Versions 2 to 5 spell out every field of
// allocator.OfficeConfig in a fixed order (the table in the package doc),
// so the stored form belongs to this package: renaming a JSON tag of the
// PUT body, or adding a field to it, cannot change or silently drop what
// is already on disk. Version 3 adds a service's online_cancel and the
// policy's min_notice and working-day cutoffs; a version-2 value is read
// with them at their defaults (online_cancel omitted, the others 0), the
// rules it was stored under. Version 4 adds a service's documents and
// names; a value of an older version is read with them absent (nil), as
// they were. Version 5 adds a service's requires_approval; an older value
// is read with it false, as every service confirmed at once then.
// Version 1 stored the config as its JSON; it is still read. The next
// write of an office stores version 5.
//
// TestOfficeCodecCoversEveryField fills every field of OfficeConfig by
// reflection and requires the round trip to keep it: a field added to the
// config but not here fails it.

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"slotd/allocator"
)

// officeListMax bounds every list inside an office value (closures,
// services, hours intervals, weekdays): above the allocator's own limits,
// so that a count beyond it can only be corruption.
const officeListMax = 4096

// appendOffice appends the version-5 encoding of r.
func appendOffice(dst []byte, r *allocator.OfficeRecord) ([]byte, error) {
	c := &r.Config
	if c.ID == "" {
		return dst, fmt.Errorf("%w: office without id", ErrInvalidRecord)
	}
	if err := checkOfficeLimits(c); err != nil {
		return dst, err
	}
	start := len(dst)
	dst = append(dst, officeVersion)
	dst = binary.AppendVarint(dst, int64(r.ReleasedThrough))
	for _, s := range [...]string{c.ID, c.Name, c.Region, c.City, c.Address, c.Timezone} {
		dst = appendString(dst, s)
	}
	dst = binary.AppendUvarint(dst, uint64(c.SlotMinutes))
	dst = binary.AppendUvarint(dst, uint64(c.Windows))

	// Hours: entries in key order, so that one config has one encoding.
	if c.Hours == nil {
		dst = binary.AppendUvarint(dst, 0)
	} else {
		days := make([]string, 0, len(c.Hours))
		for day := range c.Hours {
			days = append(days, day)
		}
		slices.Sort(days)
		dst = binary.AppendUvarint(dst, uint64(len(days))+1)
		for _, day := range days {
			dst = appendString(dst, day)
			dst = appendStrings(dst, c.Hours[day])
		}
	}
	dst = appendStrings(dst, c.Closures)

	if c.Services == nil {
		dst = binary.AppendUvarint(dst, 0)
	} else {
		dst = binary.AppendUvarint(dst, uint64(len(c.Services))+1)
		for i := range c.Services {
			s := &c.Services[i]
			dst = appendString(dst, s.ID)
			dst = appendString(dst, s.Name)
			dst = binary.AppendUvarint(dst, uint64(s.Slots))
			dst = appendStrings(dst, s.Weekdays)
			dst = appendBool(dst, s.Reschedulable)
			dst = appendOptBool(dst, s.OnlineCancel)
			dst = appendStrings(dst, s.Documents)
			dst = appendStringMap(dst, s.Names)
			dst = appendBool(dst, s.RequiresApproval)
		}
	}

	p := &c.Policy
	dst = binary.AppendVarint(dst, int64(p.HorizonDays))
	dst = appendString(dst, p.ReleaseTime)
	dst = binary.AppendVarint(dst, int64(p.HoldTTL))
	dst = binary.AppendVarint(dst, int64(p.CancelCutoff))
	dst = binary.AppendVarint(dst, int64(p.LateCancelFloor))
	dst = binary.AppendVarint(dst, int64(p.RescheduleCutoff))
	dst = binary.AppendVarint(dst, int64(p.MaxReschedules))
	dst = binary.AppendVarint(dst, int64(p.MaxActivePerApplicant))
	dst = binary.AppendVarint(dst, int64(p.CancelPenalty.Count))
	dst = binary.AppendVarint(dst, int64(p.CancelPenalty.Window))
	dst = binary.AppendVarint(dst, int64(p.CancelPenalty.Block))
	dst = binary.AppendVarint(dst, int64(p.NoShowGrace))
	dst = binary.AppendVarint(dst, int64(p.ReleaseLottery))
	dst = binary.AppendVarint(dst, int64(p.ReminderBefore))
	dst = binary.AppendVarint(dst, int64(p.MinNotice))
	dst = binary.AppendVarint(dst, int64(p.CancelCutoffWorkingDays))
	dst = binary.AppendVarint(dst, int64(p.RescheduleCutoffWorkingDays))

	if n := len(dst) - start; n > officeValueBytesMax {
		return dst[:start], fmt.Errorf("%w: office %q is %d bytes, at most %d", ErrRecordTooLarge, c.ID, n, officeValueBytesMax)
	}
	return dst, nil
}

// checkOfficeLimits asserts what the decoder will demand of the config.
func checkOfficeLimits(c *allocator.OfficeConfig) error {
	texts := []string{c.ID, c.Name, c.Region, c.City, c.Address, c.Timezone, c.Policy.ReleaseTime}
	lists := [][]string{c.Closures}
	for day, ivs := range c.Hours {
		texts = append(texts, day)
		lists = append(lists, ivs)
	}
	for _, s := range c.Services {
		texts = append(texts, s.ID, s.Name)
		lists = append(lists, s.Weekdays, s.Documents)
		for lang, name := range s.Names {
			texts = append(texts, lang, name)
		}
		if len(s.Names) > officeListMax {
			return fmt.Errorf("%w: office %q: service %q has %d names, at most %d", ErrRecordTooLarge, c.ID, s.ID, len(s.Names), officeListMax)
		}
	}
	for _, l := range lists {
		texts = append(texts, l...)
	}
	for _, s := range texts {
		if err := checkText("office field", s); err != nil {
			return fmt.Errorf("office %q: %w", c.ID, err)
		}
	}
	if len(c.Hours) > officeListMax || len(c.Services) > officeListMax {
		return fmt.Errorf("%w: office %q: more than %d hours entries or services", ErrRecordTooLarge, c.ID, officeListMax)
	}
	for _, l := range lists {
		if len(l) > officeListMax {
			return fmt.Errorf("%w: office %q: a list of %d entries, at most %d", ErrRecordTooLarge, c.ID, len(l), officeListMax)
		}
	}
	if c.SlotMinutes < 0 || c.Windows < 0 {
		return fmt.Errorf("%w: office %q: negative grid or windows", ErrInvalidRecord, c.ID)
	}
	for _, s := range c.Services {
		if s.Slots < 0 {
			return fmt.Errorf("%w: office %q: service %q has negative slots", ErrInvalidRecord, c.ID, s.ID)
		}
	}
	return nil
}

// appendStrings appends a list as a uvarint of its length plus one (0 for
// a nil list, so that nil and empty survive the round trip as they came)
// and its strings.
func appendStrings(dst []byte, l []string) []byte {
	if l == nil {
		return binary.AppendUvarint(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(l))+1)
	for _, s := range l {
		dst = appendString(dst, s)
	}
	return dst
}

// appendStringMap appends a map of strings as a list (length plus one, 0
// for nil) of key and value pairs in key order, so that one map has one
// encoding.
func appendStringMap(dst []byte, m map[string]string) []byte {
	if m == nil {
		return binary.AppendUvarint(dst, 0)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = binary.AppendUvarint(dst, uint64(len(keys))+1)
	for _, k := range keys {
		dst = appendString(dst, k)
		dst = appendString(dst, m[k])
	}
	return dst
}

func appendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// appendOptBool appends an optional bool as one byte: 0 omitted (nil), 1
// false, 2 true, so that an omitted field stays omitted.
func appendOptBool(dst []byte, v *bool) []byte {
	switch {
	case v == nil:
		return append(dst, 0)
	case *v:
		return append(dst, 2)
	}
	return append(dst, 1)
}

// listLen reads the length-plus-one of a list; nil reports a nil list.
func (d *decoder) listLen(what string) (n int, isNil bool) {
	v := d.uvarintMax(officeListMax+1, what)
	if v == 0 {
		return 0, true
	}
	return int(v - 1), false
}

func (d *decoder) strings(what string) []string {
	n, isNil := d.listLen(what)
	if isNil || d.err != nil {
		return nil
	}
	l := make([]string, 0, min(n, len(d.b)))
	for range n {
		l = append(l, string(d.text(what)))
	}
	return l
}

// stringMap reads what appendStringMap wrote.
func (d *decoder) stringMap(what string) map[string]string {
	n, isNil := d.listLen(what)
	if isNil || d.err != nil {
		return nil
	}
	m := make(map[string]string, min(n, len(d.b)))
	for range n {
		k := string(d.text(what))
		m[k] = string(d.text(what))
	}
	return m
}

func (d *decoder) optBool(what string) *bool {
	switch b := d.byte(); b {
	case 0:
		return nil
	case 1, 2:
		v := b == 2
		return &v
	default:
		d.fail(fmt.Errorf("%w: %s is %d", errFieldRange, what, b))
		return nil
	}
}

func (d *decoder) bool(what string) bool {
	switch b := d.byte(); b {
	case 0:
		return false
	case 1:
		return true
	default:
		d.fail(fmt.Errorf("%w: %s is %d", errFieldRange, what, b))
		return false
	}
}

// int reads a zig-zag varint that must fit an int32, as every count and
// minute field of the config does.
func (d *decoder) int(what string) int {
	v := d.varint()
	if v < -1<<31 || v > 1<<31-1 {
		d.fail(fmt.Errorf("%w: %s %d", errFieldRange, what, v))
		return 0
	}
	return int(v)
}

func (d *decoder) duration() allocator.Duration {
	return allocator.Duration(time.Duration(d.varint()))
}

// decodeOffice decodes an office value of version 1 to 5 and checks that
// it belongs to id. The config's rules are checked by the engine when it
// restores the office, as when it is first put.
func decodeOffice(v []byte, id string) (allocator.OfficeRecord, error) {
	var r allocator.OfficeRecord
	d := decoder{b: v}
	ver := d.byte()
	through := d.int("released_through")
	if d.err != nil {
		return r, d.err
	}
	r.ReleasedThrough = allocator.Date(through)
	switch ver {
	case officeVersion1:
		if err := json.Unmarshal(d.b, &r.Config); err != nil {
			return allocator.OfficeRecord{}, fmt.Errorf("office config: %w", err)
		}
	case officeVersion2, officeVersion3, officeVersion4, officeVersion:
		v3, v4, v5 := ver >= officeVersion3, ver >= officeVersion4, ver >= officeVersion
		c := &r.Config
		for _, f := range [...]struct {
			s    *string
			what string
		}{{&c.ID, "id"}, {&c.Name, "name"}, {&c.Region, "region"}, {&c.City, "city"}, {&c.Address, "address"}, {&c.Timezone, "timezone"}} {
			*f.s = string(d.text("office " + f.what))
		}
		c.SlotMinutes = int(d.uvarintMax(1<<31-1, "slot_minutes"))
		c.Windows = int(d.uvarintMax(1<<31-1, "windows"))
		if n, isNil := d.listLen("hours"); !isNil && d.err == nil {
			c.Hours = make(map[string][]string, min(n, len(d.b)))
			for range n {
				day := string(d.text("hours day"))
				c.Hours[day] = d.strings("hours intervals")
			}
		}
		c.Closures = d.strings("closures")
		if n, isNil := d.listLen("services"); !isNil && d.err == nil {
			c.Services = make([]allocator.ServiceConfig, 0, min(n, len(d.b)))
			for range n {
				var s allocator.ServiceConfig
				s.ID = string(d.text("service id"))
				s.Name = string(d.text("service name"))
				s.Slots = int(d.uvarintMax(1<<31-1, "service slots"))
				s.Weekdays = d.strings("service weekdays")
				s.Reschedulable = d.bool("service reschedulable")
				if v3 {
					s.OnlineCancel = d.optBool("service online_cancel")
				}
				if v4 {
					s.Documents = d.strings("service documents")
					s.Names = d.stringMap("service names")
				}
				if v5 {
					s.RequiresApproval = d.bool("service requires_approval")
				}
				c.Services = append(c.Services, s)
			}
		}
		p := &c.Policy
		p.HorizonDays = d.int("horizon_days")
		p.ReleaseTime = string(d.text("release_time"))
		p.HoldTTL = d.duration()
		p.CancelCutoff = d.duration()
		p.LateCancelFloor = d.duration()
		p.RescheduleCutoff = d.duration()
		p.MaxReschedules = d.int("max_reschedules")
		p.MaxActivePerApplicant = d.int("max_active_per_applicant")
		p.CancelPenalty.Count = d.int("cancel_penalty count")
		p.CancelPenalty.Window = d.duration()
		p.CancelPenalty.Block = d.duration()
		p.NoShowGrace = d.duration()
		p.ReleaseLottery = d.duration()
		p.ReminderBefore = d.duration()
		if v3 {
			p.MinNotice = d.duration()
			p.CancelCutoffWorkingDays = d.int("cancel_cutoff_working_days")
			p.RescheduleCutoffWorkingDays = d.int("reschedule_cutoff_working_days")
		}
		if err := d.end(); err != nil {
			return allocator.OfficeRecord{}, err
		}
	default:
		return r, fmt.Errorf("%w: office version %d", errVersion, ver)
	}
	if r.Config.ID != id {
		return allocator.OfficeRecord{}, fmt.Errorf("%w: office %q stored under %q", errKeyMismatch, r.Config.ID, id)
	}
	return r, nil
}
