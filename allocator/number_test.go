package allocator

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// bookingNumber writes OFFICE-YYYYMMDD-NNNN: the office upper-cased, the
// date, the sequence zero-padded to at least four digits.
func TestBookingNumberFormat(t *testing.T) {
	day := DateOf(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	for _, tc := range []struct {
		office string
		seq    uint32
		want   string
	}{
		{"msk-mfc-tverskoy", 7, "MSK-MFC-TVERSKOY-20261201-0007"},
		{"a1", 0, "A1-20261201-0000"},
		{"b", 1234, "B-20261201-1234"},
		{"c", 98765, "C-20261201-98765"},
		{"d", 4294967295, "D-20261201-4294967295"},
		{"офис", 12, "ОФИС-20261201-0012"},
	} {
		if got := bookingNumber(tc.office, day, tc.seq); got != tc.want {
			t.Errorf("bookingNumber(%q, %s, %d) = %q, want %q", tc.office, day, tc.seq, got, tc.want)
		}
		if want := fmt.Sprintf("%s-%s-%04d", strings.ToUpper(tc.office), string(day.appendCompact(nil)), tc.seq); tc.want != want {
			t.Fatalf("case %q: the table disagrees with the format %q", tc.office, want)
		}
	}
}
