package peers

import (
	"bytes"
	"testing"
	"time"
)

// BenchmarkParseFree144: the generator reading one availability answer of
// 144 starts, what each applicant of the rush does first.
func BenchmarkParseFree144(b *testing.B) {
	lay := DefaultLayout(time.Now(), 1)
	date := lay.Dates[0]
	free := make([]int, lay.Steps())
	for s := range free {
		free[s] = s % 64
	}
	body := appendSlotsJSON(nil, &lay, date, free)
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
	good := appendSlotsJSON(nil, &lay, date, free)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(slotsHead + slotsTail))
	f.Fuzz(func(t *testing.T, body []byte) {
		p := freeParser{lay: &lay}
		got, err := p.parse(body, date, nil)
		if err != nil {
			return
		}
		if again := appendSlotsJSON(nil, &lay, date, got); !bytes.Equal(again, body) {
			t.Fatalf("accepted %q, read as %v, which is written %q", body, got, again)
		}
	})
}
