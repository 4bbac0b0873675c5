package peers

import (
	"testing"
	"time"
)

// BenchmarkParseSlots144: the generator reading one availability answer of
// 144 starts, what each applicant of the rush does first.
func BenchmarkParseSlots144(b *testing.B) {
	first := time.Date(2026, 12, 1, 8, 0, 0, 0, time.FixedZone("", 3*3600))
	var slots []Slot
	for k := range 144 {
		slots = append(slots, Slot{Start: first.Add(time.Duration(k) * 5 * time.Minute), Free: k})
	}
	body := appendSlotsJSON(nil, slots)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseSlots(body); err != nil {
			b.Fatal(err)
		}
	}
}
