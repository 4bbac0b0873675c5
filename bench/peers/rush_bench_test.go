package peers

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"slotd/client"
	"slotd/internal/flatjson"
)

// rushDay is one date of the rush's office (144 starts of 64 windows)
// with a free count at every start.
func rushDay() (lay Layout, date string, free []int) {
	lay = DefaultLayout(time.Now(), 1)
	free = make([]int, lay.Steps())
	for s := range free {
		free[s] = s % 64
	}
	return lay, lay.Dates[0], free
}

// BenchmarkParseFree144: the generator reading one availability answer of
// 144 starts, what each applicant of the rush does first.
func BenchmarkParseFree144(b *testing.B) {
	lay, date, free := rushDay()
	body := appendSlotsJSON(nil, newSlotsTemplate(&lay, date), free)
	p := freeParser{lay: &lay}
	dst := make([]int, 0, len(free))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, err = p.parse(body, date, dst[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendSlots144: the edge writing one availability answer of
// 144 starts.
func BenchmarkAppendSlots144(b *testing.B) {
	lay, date, free := rushDay()
	t := newSlotsTemplate(&lay, date)
	buf := appendSlotsJSON(nil, t, free)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendSlotsJSON(buf[:0], t, free)
	}
}

// FuzzParseFree: the generator's reader of availability answers never
// panics, and it accepts an answer only if the edge would write exactly
// those bytes for the counts it read.
func FuzzParseFree(f *testing.F) {
	lay := testLayout(1)
	date := lay.Dates[0]
	free := make([]int, lay.Steps())
	for s := range free {
		free[s] = s % 3
	}
	good := appendSlotsJSON(nil, newSlotsTemplate(&lay, date), free)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(slotsHead + slotsTail))
	f.Fuzz(func(t *testing.T, body []byte) {
		p := freeParser{lay: &lay}
		got, err := p.parse(body, date, nil)
		if err != nil {
			return
		}
		if again := appendSlotsJSON(nil, newSlotsTemplate(&lay, date), got); !bytes.Equal(again, body) {
			t.Fatalf("accepted %q, read as %v, which is written %q", body, got, again)
		}
	})
}

// aHold is a hold as the rush sends it.
func aHold() []byte {
	return newBodyWriter(&Layout{Office: "bench", Service: "patent"}).hold("a-1042", time.Date(2026, 12, 1, 8, 5, 0, 0, time.UTC))
}

// BenchmarkDecodeHold: the edge reading one hold request.
func BenchmarkDecodeHold(b *testing.B) {
	body := aHold()
	b.ReportAllocs()
	for b.Loop() {
		var h holdJSON
		if err := decodeJSON(body, &h); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzDecodeFlat: whatever the body, the edge's decoder gives what a
// json.Decoder that refuses unknown fields gives, for both request types:
// an error for the same bodies, the same values otherwise.
func FuzzDecodeFlat(f *testing.F) {
	for _, s := range []string{string(aHold()), ` { "applicant" : "a-1" , "reason":"x" } `, `{}`, ``, `{"applicant":"a\"b"}`,
		`{"Applicant":"a"}`, `{"applicant":"a"} x`, `{"applicant":"a","applicant":"b"}`, `{"confirm":null}`,
		`{"confirm":true,"start":"2026-13-01T08:00:00Z"}`, `{"bogus":1}`, `{"applicant":"é"}`, `{"applicant":"a",}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var got, want holdJSON
		if !sameDecode(t, body, &got, &want) {
			return
		}
		if got.Office != want.Office || got.Service != want.Service || got.Applicant != want.Applicant ||
			got.Confirm != want.Confirm || !got.Start.Equal(want.Start) ||
			got.Start.Format(time.RFC3339Nano) != want.Start.Format(time.RFC3339Nano) {
			t.Fatalf("%q: read as %+v, encoding/json reads %+v", body, got, want)
		}
		var gotC, wantC cancelJSON
		if sameDecode(t, body, &gotC, &wantC) && gotC != wantC {
			t.Fatalf("%q: read as %+v, encoding/json reads %+v", body, gotC, wantC)
		}
	})
}

// sameDecode decodes body into got with decodeJSON and into want with
// encoding/json, fails unless both refuse or both accept, and reports
// whether they accepted.
func sameDecode(t *testing.T, body []byte, got, want any) bool {
	t.Helper()
	errGot := decodeJSON(body, got)
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	errWant := dec.Decode(want)
	if (errGot == nil) != (errWant == nil) {
		t.Fatalf("%q: decodeJSON says %v, encoding/json says %v", body, errGot, errWant)
	}
	return errGot == nil
}

// bookingAnswer is a booking as the edge answers a hold.
func bookingAnswer() []byte {
	start := time.Date(2026, 12, 9, 8, 5, 0, 0, time.UTC)
	return appendBookingJSON(nil, &Booking{ID: "p0yJmZ3ZQk2m0kT8vYQb1w", Number: "BENCH-20261209-0042", Office: "bench",
		Service: "patent", Applicant: "a-123", Window: 17, Start: start, End: start.Add(5 * time.Minute), Status: statusConfirmed})
}

// BenchmarkParseBooking: the generator reading one booking answer into
// the API's booking, once per booking of the rush.
func BenchmarkParseBooking(b *testing.B) {
	body := bookingAnswer()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := readBooking(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHoldBody: the generator writing one hold, once per attempt.
func BenchmarkHoldBody(b *testing.B) {
	lay := testLayout(1)
	start := lay.Start(lay.Dates[0], 1)
	w := newBodyWriter(&lay)
	b.ReportAllocs()
	for b.Loop() {
		_ = w.hold("a-1042", start)
	}
}

// BenchmarkReadBookingJSON: encoding/json reading the same answer, what
// readBooking falls back to.
func BenchmarkReadBookingJSON(b *testing.B) {
	body := bookingAnswer()
	b.ReportAllocs()
	for b.Loop() {
		var out client.Booking
		if err := json.Unmarshal(body, &out); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzReadFlat: whatever the answer, flatjson.Decode never panics, and what it
// reads into the API's booking is what encoding/json reads.
func FuzzReadFlat(f *testing.F) {
	// The peers' edge's answer as it writes it.
	f.Add(bookingAnswer())
	// Members in another order, white space, an offset, a negative
	// window (read as encoding/json reads it), an empty object.
	f.Add([]byte(" {\"status\":\"held\", \"window\" : -3,\"start\":\"2026-12-09T08:05:00+03:00\",\"id\":\"x\"}\n"))
	f.Add([]byte(`{}`))
	// Declined: an escape, a leading zero, a fraction, an array, a member
	// the booking lacks, a case-folded name encoding/json would match.
	f.Add([]byte(`{"applicant":"a\"b"}`))
	f.Add([]byte(`{"window":01}`))
	f.Add([]byte(`{"window":1.5}`))
	f.Add([]byte(`{"id":"x","history":[]}`))
	f.Add([]byte(`{"bogus":"x"}`))
	f.Add([]byte(`{"ID":"x"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var got client.Booking
		if !flatjson.Decode(body, &got) {
			return
		}
		var want client.Booking
		if err := json.Unmarshal(body, &want); err != nil {
			t.Fatalf("flatjson.Decode read %q, which encoding/json refuses: %v", body, err)
		}
		same := func(a, b time.Time) bool { return a.Equal(b) && a.Location().String() == b.Location().String() }
		if !same(got.Start, want.Start) || !same(got.End, want.End) {
			t.Fatalf("flatjson.Decode(%q) times %v %v, encoding/json %v %v", body, got.Start, got.End, want.Start, want.End)
		}
		got.Start, got.End, want.Start, want.End = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("flatjson.Decode(%q) = %+v, encoding/json %+v", body, got, want)
		}
	})
}
