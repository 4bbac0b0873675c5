package wal

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"slotd/allocator"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the golden files under testdata/ from the current encoders")

// TestOfficeCodecCoversEveryField: every field of OfficeConfig, filled with
// a value of its own by reflection, survives the round trip of the current version. A
// field added to the config but not to the codec fails here instead of
// being dropped from disk.
func TestOfficeCodecCoversEveryField(t *testing.T) {
	var cfg allocator.OfficeConfig
	n := 0
	fillDistinct(reflect.ValueOf(&cfg).Elem(), &n)
	r := allocator.OfficeRecord{Config: cfg, ReleasedThrough: date0 + 7}
	v, err := appendOffice(nil, &r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeOffice(v, cfg.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip lost a field:\nwant %+v\ngot  %+v", r, got)
	}
}

// fillDistinct gives every field under v a non-zero value that no other
// field has, lists and maps two entries each.
func fillDistinct(v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", *n))
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Pointer:
		e := reflect.New(v.Type().Elem())
		fillDistinct(e.Elem(), n)
		v.Set(e)
	case reflect.Struct:
		for i := range v.NumField() {
			fillDistinct(v.Field(i), n)
		}
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			fillDistinct(s.Index(i), n)
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for range 2 {
			k := reflect.New(v.Type().Key()).Elem()
			fillDistinct(k, n)
			e := reflect.New(v.Type().Elem()).Elem()
			fillDistinct(e, n)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	default:
		panic(fmt.Sprintf("BUG: fillDistinct does not know %s; teach it and the office codec the new field", v.Type()))
	}
}

// TestOfficeCodecKeepsNilAndEmpty: an omitted list and an empty one are
// stored apart, so GET answers with the config as it was put.
func TestOfficeCodecKeepsNilAndEmpty(t *testing.T) {
	cfg := testOffice("msk-1")
	cfg.Closures = []string{}
	cfg.Services[0].Weekdays = nil
	cfg.Hours["sun"] = []string{}
	off := false
	cfg.Services[0].OnlineCancel = &off // false, not omitted
	r := allocator.OfficeRecord{Config: cfg}
	v, err := appendOffice(nil, &r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeOffice(v, "msk-1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip:\nwant %+v\ngot  %+v", r, got)
	}
}

// goldenOffice is the office the golden files of versions 1 and 2 hold:
// every kind of field of theirs set, closures, a two-step service limited
// to some weekdays.
func goldenOffice() allocator.OfficeRecord {
	cfg := testOffice("msk-sakharovo")
	cfg.Closures = []string{"2027-01-01", "2027-01-07"}
	cfg.Policy.ReleaseLottery = allocator.Duration(2e9)
	return allocator.OfficeRecord{Config: cfg, ReleasedThrough: date0 + 30}
}

// goldenOfficeV3 is goldenOffice with the fields version 3 added: one
// service cancelled by the office only, one explicitly online, a minimum
// notice and working-day cutoffs.
func goldenOfficeV3() allocator.OfficeRecord {
	r := goldenOffice()
	r.Config.Services = slices.Clone(r.Config.Services)
	off, on := false, true
	r.Config.Services[0].OnlineCancel = &off
	r.Config.Services[1].OnlineCancel = &on
	r.Config.Policy.MinNotice = allocator.Duration(2 * time.Hour)
	r.Config.Policy.CancelCutoffWorkingDays = 2
	r.Config.Policy.RescheduleCutoffWorkingDays = 3
	return r
}

// goldenOfficeV4 is goldenOfficeV3 with the fields version 4 added: one
// service's documents and names in two languages, the other's left out.
func goldenOfficeV4() allocator.OfficeRecord {
	r := goldenOfficeV3()
	r.Config.Services[0].Documents = []string{"паспорт", "миграционная карта"}
	r.Config.Services[0].Names = map[string]string{"ru": "Патент", "en": "Work patent"}
	return r
}

// goldenOfficeV5 is goldenOfficeV4 with the field version 5 added: the
// second service requires approval, the first does not.
func goldenOfficeV5() allocator.OfficeRecord {
	r := goldenOfficeV4()
	r.Config.Services[1].RequiresApproval = true
	return r
}

// TestOfficeGolden holds the office encoder to testdata/office-v5.hex and
// reads it back; it reads testdata/office-v4.hex (stores of format 7)
// into goldenOfficeV4, requires_approval false, testdata/office-v3.hex
// (stores of format 6) into goldenOfficeV3, the fields version 4 added
// absent, and testdata/office-v2.hex (stores of format 5 before version
// 3) and testdata/office-v1.hex (the JSON form that stores of format 4
// and older hold) into goldenOffice, the fields versions 3 to 5 added at
// their defaults. Run with -rewrite after a deliberate format
// change (which needs a new version, see the package doc); it rewrites
// only the newest version's file: the older ones are what old stores
// hold, and no longer written.
func TestOfficeGolden(t *testing.T) {
	want5 := goldenOfficeV5()
	v5, err := appendOffice(nil, &want5)
	if err != nil {
		t.Fatal(err)
	}
	if *rewrite {
		writeGolden(t, "office-v5.hex", v5)
	}
	if golden := readGolden(t, "office-v5.hex"); !bytes.Equal(v5, golden) {
		t.Fatalf("the office encoding changed (a stored format must not):\ngot  %x\nwant %x", v5, golden)
	}
	want := goldenOffice()
	for name, want := range map[string]allocator.OfficeRecord{"office-v5.hex": want5, "office-v4.hex": goldenOfficeV4(),
		"office-v3.hex": goldenOfficeV3(), "office-v2.hex": want, "office-v1.hex": want} {
		got, err := decodeOffice(readGolden(t, name), want.Config.ID)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s decodes to\n%+v\nwant\n%+v", name, got, want)
		}
	}
}

// writeGolden stores b as hex, 32 bytes a line.
func writeGolden(t *testing.T, name string, b []byte) {
	t.Helper()
	var sb strings.Builder
	for len(b) > 0 {
		n := min(32, len(b))
		sb.WriteString(hex.EncodeToString(b[:n]))
		sb.WriteByte('\n')
		b = b[n:]
	}
	if err := os.WriteFile(filepath.Join("testdata", name), []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	text, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("%v (run go test -run %s -rewrite to create it)", err, t.Name())
	}
	b, err := hex.DecodeString(strings.Join(strings.Fields(string(text)), ""))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

// TestOlderStoresAreRestamped: a store of format 4 to 7 holds its
// offices as office value version 1 (JSON) to 4; Open stamps it with
// the current format, recovery reads the office as it was (the fields of
// later versions at their defaults), and the next write of the office
// stores the current version.
func TestOlderStoresAreRestamped(t *testing.T) {
	f := func(format byte, golden string, want allocator.OfficeRecord) {
		t.Helper()
		db, dir := openTest(t, Options{})
		b := db.pdb.NewBatch()
		_ = b.Set(officeKey(nil, want.Config.ID), readGolden(t, golden), nil)
		_ = b.Set(metaKey(metaFormat), []byte{format}, nil)
		if err := b.Commit(pebble.Sync); err != nil {
			t.Fatal(err)
		}
		db = reopen(t, db, dir)
		checkStamp(t, db)
		c := &collector{}
		if _, err := Recover(db, c, t0); err != nil {
			t.Fatalf("format %d: %v", format, err)
		}
		if len(c.offices) != 1 || !reflect.DeepEqual(c.offices[0], want) {
			t.Fatalf("format %d: recovered offices %+v, want [%+v]", format, c.offices, want)
		}
		next := goldenOfficeV5()
		mustCommit(t, db, &allocator.Change{Office: &next})
		v, closer, err := db.pdb.Get(officeKey(nil, want.Config.ID))
		if err != nil {
			t.Fatal(err)
		}
		defer closer.Close()
		if v[0] != officeVersion {
			t.Fatalf("format %d: office rewritten with version %d, want %d", format, v[0], officeVersion)
		}
		got, err := decodeOffice(v, want.Config.ID)
		if err != nil || !reflect.DeepEqual(got, next) {
			t.Fatalf("format %d: rewritten office %+v (%v), want %+v", format, got, err, next)
		}
	}
	f(4, "office-v1.hex", goldenOffice())
	f(5, "office-v2.hex", goldenOffice())
	f(6, "office-v3.hex", goldenOfficeV3())
	f(7, "office-v4.hex", goldenOfficeV4())
}
