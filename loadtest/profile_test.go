package loadtest

import (
	"strings"
	"testing"
	"time"
)

func TestParseProfile(t *testing.T) {
	ok := func(in string, want ...ProfilePoint) {
		t.Helper()
		p, err := ParseProfile(strings.NewReader(in))
		if err != nil {
			t.Fatalf("ParseProfile(%q): %v", in, err)
		}
		if !p.Step || p.StepLength != time.Minute {
			t.Fatalf("ParseProfile(%q): step %v length %v, want per-minute steps", in, p.Step, p.StepLength)
		}
		if len(p.Points) != len(want) {
			t.Fatalf("ParseProfile(%q) = %v, want %v", in, p.Points, want)
		}
		for i := range want {
			if p.Points[i] != want[i] {
				t.Fatalf("ParseProfile(%q) = %v, want %v", in, p.Points, want)
			}
		}
	}
	bad := func(in, wantErr string) {
		t.Helper()
		_, err := ParseProfile(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("ParseProfile(%q) error %v, want one containing %q", in, err, wantErr)
		}
	}
	ok("00:00,10\n", ProfilePoint{0, 10})
	ok("time,rate\n00:00,1.5\n00:01,0\n", ProfilePoint{0, 1.5}, ProfilePoint{time.Minute, 0})
	ok("# c\n\n TIME , Rate \r\n 09:30 , 2e2 \n23:59,7", ProfilePoint{9*time.Hour + 30*time.Minute, 200}, ProfilePoint{23*time.Hour + 59*time.Minute, 7})
	ok("00:00,1\n48:00,2\n", ProfilePoint{0, 1}, ProfilePoint{48 * time.Hour, 2})
	bad("", "no rows")
	bad("# only a comment\n", "no rows")
	bad("time,rate\n", "no rows")
	bad("00:00\n", "want 2 fields")
	bad("00:00,1,2\n", "want 2 fields")
	bad("0000,1\n", "want HH:MM")
	bad("00:60,1\n", "MM < 60")
	bad("168:00,1\n", "HH < 168")
	bad("-1:00,1\n", "HH:MM")
	bad("+1:00,1\n", "HH:MM")
	bad("00:0,1\n", "want HH:MM")
	bad("00:00,-1\n", "finite number")
	bad("00:00,NaN\n", "finite number")
	bad("00:00,Inf\n", "finite number")
	bad("00:00,x\n", "finite number")
	bad("00:01,1\n00:01,2\n", "not after")
	bad("00:02,1\n00:01,2\n", "not after")
	bad("00:00,1\ntime,rate\n", "want HH:MM") // a header only on top
	bad(strings.Repeat("0", profileLineBytesMax+1), "token too long")
}

func TestSampleProfile(t *testing.T) {
	p := SampleProfile()
	if len(p.Points) != 24*60 {
		t.Fatalf("sample profile has %d rows, want one per minute of a day", len(p.Points))
	}
	rate := func(hhmm string) float64 {
		at, err := parseMinute(hhmm)
		if err != nil {
			t.Fatal(err)
		}
		return p.Points[int(at/time.Minute)].RatePerSecond
	}
	// The shape the profile promises: the midnight release spike is the
	// day's peak, the night is quiet, the morning is busier than the night.
	if rate("00:00") != p.PeakRate() {
		t.Errorf("peak %v is not at the 00:00 release (%v)", p.PeakRate(), rate("00:00"))
	}
	if rate("04:00") >= rate("10:00") || rate("10:00") >= rate("00:00") || rate("00:30") >= rate("00:01") {
		t.Errorf("shape broken: 00:00 %v 00:01 %v 00:30 %v 04:00 %v 10:00 %v",
			rate("00:00"), rate("00:01"), rate("00:30"), rate("04:00"), rate("10:00"))
	}
	// It round-trips through String.
	q, err := ParseProfile(strings.NewReader(p.String()))
	if err != nil || len(q.Points) != len(p.Points) || q.Points[600] != p.Points[600] {
		t.Fatalf("round trip: %v, %d points", err, len(q.Points))
	}
}

func FuzzParseProfile(f *testing.F) {
	f.Add("time,rate\n00:00,1800\n00:01,950\n") // header and two rows
	f.Add("# comment\n\n09:00,1.5e2\n")         // comment, blank line, exponent
	f.Add("00:00,0\n")                          // a zero rate
	f.Add("167:59,1\n")                         // the last minute of a week
	f.Add("00:01,1\n00:00,1\n")                 // minutes going backwards
	f.Add("00:00,NaN\n")                        // a rate that is not finite
	f.Add("00:00,1,\n")                         // a trailing separator
	f.Add(" 12 : 30 ,5\r\n")                    // spaces inside the time
	f.Add("\xff\xfe00:00,1")                    // bytes that are not UTF-8
	f.Fuzz(func(t *testing.T, in string) {
		p, err := ParseProfile(strings.NewReader(in))
		if err != nil {
			return
		}
		// Whatever parses is a valid pacer input and round-trips.
		if _, err := NewProfilePacer(p, 0); err != nil {
			t.Fatalf("parsed profile rejected by the pacer: %v", err)
		}
		q, err := ParseProfile(strings.NewReader(p.String()))
		if err != nil || len(q.Points) != len(p.Points) {
			t.Fatalf("round trip of %q: %v", p.String(), err)
		}
		for i := range p.Points {
			if q.Points[i] != p.Points[i] {
				t.Fatalf("round trip point %d: %v != %v", i, q.Points[i], p.Points[i])
			}
		}
	})
}
