package flatjson

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// status is a type over string, as generated clients declare enums.
type status string

// request has one member of each kind Decode reads.
type request struct {
	Office  string    `json:"office"`
	Start   time.Time `json:"start"`
	Confirm bool      `json:"confirm"`
	Window  int       `json:"window"`
	Status  status    `json:"status"`
}

const plain = `{"office":"msk-1","start":"2026-12-01T08:05:00+03:00","confirm":true,"window":-12,"status":"held"}`

// The plain bodies take Decode's way, with every member read.
func TestDecodePlain(t *testing.T) {
	for _, body := range []string{plain, " {\n\t\"office\" : \"msk-1\" ,\"confirm\":false}\r\n", `{}`} {
		var r request
		if !Decode([]byte(body), &r) {
			t.Fatalf("%q declined", body)
		}
		var want request
		if err := json.Unmarshal([]byte(body), &want); err != nil || !same(r, want) {
			t.Fatalf("%q read as %+v, want %+v (%v)", body, r, want, err)
		}
	}
	// Declined: escapes, other spellings of a name, null, unknown names,
	// trailing data, non-ASCII, a malformed time, a trailing comma.
	for _, body := range []string{``, `{"office":"a\"b"}`, `{"Office":"a"}`, `{"confirm":null}`, `{"bogus":"x"}`,
		`{"office":"a"} x`, `{"office":"é"}`, `{"start":"2026-13-01T08:00:00Z"}`, `{"office":"a",}`, `[]`} {
		var r request
		if Decode([]byte(body), &r) {
			t.Errorf("%q accepted as %+v", body, r)
		}
	}
}

// FuzzDecode: whatever the body, if Decode accepts it, a json.Decoder that
// refuses unknown fields accepts it too, reads the same values and finds
// nothing but white space after the object.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{plain, ` { "office" : "a" } `, `{}`, ``, `{"office":"a\"b"}`, `{"Office":"a"}`,
		`{"office":"a"} x`, `{"office":"a","office":"b"}`, `{"confirm":null}`, `{"start":"2026-13-01T08:00:00Z"}`,
		`{"bogus":1}`, `{"office":"é"}`, `{"office":"a",}`, `{"window":007}`, `{"window":1.5}`, `{"window":-0}`,
		`{"window":123456789012345678}`, `{"window":1e3}`, `{"window":"1"}`, `{"status":7}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var got request
		if !Decode(body, &got) {
			return
		}
		var want request
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&want); err != nil {
			t.Fatalf("%q: Decode accepted it as %+v, encoding/json refuses: %v", body, got, err)
		}
		if _, err := dec.Token(); err == nil {
			t.Fatalf("%q: Decode accepted it, encoding/json finds more after the object", body)
		}
		if !same(got, want) {
			t.Fatalf("%q: read as %+v, encoding/json reads %+v", body, got, want)
		}
	})
}

func same(a, b request) bool {
	return a.Office == b.Office && a.Confirm == b.Confirm && a.Window == b.Window && a.Status == b.Status && a.Start.Equal(b.Start) &&
		a.Start.Format(time.RFC3339Nano) == b.Start.Format(time.RFC3339Nano)
}

// Decode reads only what it can match encoding/json on: a member of
// another type, an embedded struct, a tag option that changes decoding,
// or no struct pointer at all, and it declines.
func TestDecodeDeclinesWhatItDoesNotRead(t *testing.T) {
	type withFloat struct {
		N float64 `json:"n"`
		S string  `json:"s"`
		U string  // no tag: the field's name
		X string  `json:"-"`
	}
	var w withFloat
	if !Decode([]byte(`{"s":"x","U":"u"}`), &w) || w.S != "x" || w.U != "u" {
		t.Fatalf("members it reads: %+v", w)
	}
	for _, body := range []string{`{"n":1}`, `{"X":"x"}`, `{"-":"x"}`} {
		if Decode([]byte(body), new(withFloat)) {
			t.Errorf("%s accepted", body)
		}
	}
	type embeds struct {
		request
		Y string `json:"y"`
	}
	type quoted struct {
		S string `json:"s,string"`
	}
	type named struct {
		S code `json:"s"`
	}
	for _, v := range []any{new(embeds), new(quoted), new(named), request{}, (*request)(nil), new(string)} {
		if Decode([]byte(`{"y":"a","s":"b"}`), v) {
			t.Errorf("%T accepted", v)
		}
	}
}

type code string
