package loadtest

import (
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"slotd/httpapi"
	"slotd/internal/slotdtest/testtime"
)

// wantRows fails unless p is a per-minute profile with these "HH:MM,rate"
// rows.
func wantRows(t *testing.T, what string, p Profile, rows ...string) {
	t.Helper()
	if !p.Step || p.StepLength != time.Minute {
		t.Fatalf("%s: step %v length %v, want per-minute steps", what, p.Step, p.StepLength)
	}
	got := strings.Split(strings.TrimSpace(strings.TrimPrefix(p.String(), "time,rate\n")), "\n")
	if strings.Join(got, " ") != strings.Join(rows, " ") {
		t.Fatalf("%s: rows %v, want %v", what, got, rows)
	}
}

func TestProfileFromPrometheus(t *testing.T) {
	file := func(opts ProfileImport) Profile {
		t.Helper()
		f, err := os.Open("testdata/import/prometheus-range.json")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		p, err := ProfileFromPrometheus(f, opts)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Two series added up, 30 s samples averaged per minute, a minute
	// no sample covers is 0; Moscow's 23:59 starts the rows and the next
	// day's minutes run on past 24:00.
	wantRows(t, "Moscow", file(ProfileImport{Location: testtime.MSK}), "23:59,20", "24:00,120", "24:01,0", "24:02,5.5")
	wantRows(t, "UTC", file(ProfileImport{}), "20:59,20", "21:00,120", "21:01,0", "21:02,5.5")
	wantRows(t, "rebased", file(ProfileImport{Location: testtime.MSK, Rebase: true}), "00:00,20", "00:01,120", "00:02,0", "00:03,5.5")

	ok := func(in string, rows ...string) {
		t.Helper()
		p, err := ProfileFromPrometheus(strings.NewReader(in), ProfileImport{})
		if err != nil {
			t.Fatalf("ProfileFromPrometheus(%q): %v", in, err)
		}
		wantRows(t, in, p, rows...)
	}
	// promtool's bare result array; a 5 m step holds each sample for five
	// minutes, then the gap of a missing sample is 0.
	ok(`[{"metric":{},"values":[[0,"1"],[300,"2"],[900,"3.25"]]}]`,
		"00:00,1", "00:01,1", "00:02,1", "00:03,1", "00:04,1",
		"00:05,2", "00:06,2", "00:07,2", "00:08,2", "00:09,2",
		"00:10,0", "00:11,0", "00:12,0", "00:13,0", "00:14,0", "00:15,3.25")
	ok(`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[60.5,"0.0004"],[61,"1e2"]]}]}}`,
		"00:01,50")

	bad := func(in, wantErr string) {
		t.Helper()
		_, err := ProfileFromPrometheus(strings.NewReader(in), ProfileImport{})
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("ProfileFromPrometheus(%q) error %v, want one containing %q", in, err, wantErr)
		}
		if strings.ContainsAny(err.Error(), "\r\n") {
			t.Fatalf("error %q spans lines", err)
		}
	}
	bad(``, "not a Prometheus query answer")
	bad(`time,rate`, "not a Prometheus query answer")
	bad(`{"status":"error","errorType":"bad_data","error":"parse error at char 5"}`, `the query failed: "bad_data": "parse error at char 5"`)
	bad(`{"status":"success","data":{"resultType":"vector","result":[]}}`, `want "matrix"`)
	bad(`{"status":"success"}`, `no "data"`)
	bad(`{"status":"success","data":{"resultType":"matrix","result":[]}}`, "no samples")
	bad(`{"status":"success","data":{"resultType":"matrix","result":[{"values":[[1,"NaN"]]}]}}`, `series 1, sample 1: at 1970-01-01T00:00:01Z: value "NaN": want a finite rate`)
	bad(`[{"values":[[1,"1"],[2,"-1"]]}]`, `sample 2: at 1970-01-01T00:00:02Z: value "-1"`)
	bad(`[{"values":[["x","1"]]}]`, "want unix seconds")
	bad(`[{"values":[[1,2]]}]`, "want a number in a string")
	bad(`[{"values":[[1]]}]`, "want a number in a string")
	bad(`[{"values":[[0,"1"],[691200,"1"]]}]`, "more than a profile's 168h0m0s")
	bad(`[{"values":[[0,"1"]]}] x`, "more than one JSON value")
	bad("[{\"values\":[[0,\"1\"\n", "unexpected EOF")
	bad(`{"status":"success","data":{"resultType":"matrix","result":{}}}`, "data.result")
	bad(strings.Repeat(" ", prometheusBytesMax+1), "larger than 64 MiB")
}

func TestAccessLog(t *testing.T) {
	file := func(l *AccessLog) Profile {
		t.Helper()
		f, err := os.Open("testdata/import/access.log")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := l.Read(f); err != nil {
			t.Fatal(err)
		}
		p, err := l.Profile(ProfileImport{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Five request lines: RFC 3339 in UTC and with an offset, unix
	// seconds, one after a journal prefix; the ready line is skipped.
	l := &AccessLog{}
	wantRows(t, "all", file(l), "00:59,0.033", "01:00,0.017", "01:01,0.033")
	if l.Lines != 7 || l.Requests != 5 || l.Estimated != 5 {
		t.Errorf("lines %d requests %d estimated %v, want 7, 5, 5", l.Lines, l.Requests, l.Estimated)
	}
	wantRows(t, "days", file(&AccessLog{Route: "/v1/offices/{office}/days"}), "00:59,0.017", "01:00,0", "01:01,0.033")
	wantRows(t, "POST", file(&AccessLog{Method: "post"}), "00:59,0.017", "01:00,0.017")
	// Two nodes' logs add up.
	both := &AccessLog{}
	file(both)
	wantRows(t, "twice", file(both), "00:59,0.067", "01:00,0.033", "01:01,0.067")

	bad := func(in, wantErr string) {
		t.Helper()
		err := (&AccessLog{Sampling: SlotdLogSampling}).Read(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("Read(%q) error %v, want one containing %q", in, err, wantErr)
		}
		if strings.ContainsAny(err.Error(), "\r\n") {
			t.Fatalf("error %q spans lines", err)
		}
	}
	bad("plain text\n", "line 1: not a JSON log line")
	bad("\n{\"msg\":\"request\",\"ts\":\"2026-03-01T00:00:00Z\"}\n{\"msg\":\"request\"", "line 3: unexpected EOF")
	bad(`{"msg":"request"}`, `line 1: no "ts"`)
	bad(`{"msg":"request","ts":"yesterday"}`, `ts "yesterday": want an RFC 3339 time`)
	bad(`{"msg":"request","ts":-5}`, "want an RFC 3339 time or unix seconds")
	bad(`{"msg":"request","ts":1,"level":7}`, "cannot unmarshal number")
	bad(`{"msg":"request","ts":1} {"msg":"request","ts":2}`, "more than one JSON value")
	bad("{\"msg\":\"request\",\"ts\":0}\n{\"msg\":\"request\",\"ts\":604800}\n", "line 2: the data spans")
	bad(strings.Repeat("x", accessLogLineBytesMax+1), "line 1: longer than 65536 bytes")
	var levels strings.Builder
	for i := range logLevelsMax + 1 {
		fmt.Fprintf(&levels, "{\"msg\":\"request\",\"ts\":1,\"level\":\"l%d\"}\n", i)
	}
	bad(levels.String(), "more than 16 log levels")
	if _, err := (&AccessLog{}).Profile(ProfileImport{}); err == nil || !strings.Contains(err.Error(), "no request lines") {
		t.Errorf("profile of nothing: %v", err)
	}
}

// TestAccessLogUndoesSlotdSampling writes request lines through slotd's
// own logger (httpapi.NewLogger, sampled), driven by a clock the test
// sets, at known rates per second, and reads them back: with
// SlotdLogSampling the estimate of each minute is within the sampler's
// uncertainty of the truth, while a plain count of the lines is far off.
func TestAccessLogUndoesSlotdSampling(t *testing.T) {
	logFile, err := os.CreateTemp(t.TempDir(), "access-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	// NewLogger writes to the process's standard error as it is when the
	// logger is built.
	stderr := os.Stderr
	os.Stderr = logFile
	log, err := httpapi.NewLogger("info")
	os.Stderr = stderr
	if err != nil {
		t.Fatal(err)
	}
	clock := &stepClock{now: time.Date(2026, 3, 1, 23, 58, 0, 0, time.UTC)}
	log = log.WithOptions(zap.WithClock(clock))

	// Requests per second over three minutes: quiet, a rush at the
	// minute, a busy tail; a few 503s (logged at warn, sampled apart).
	perSecond := func(s int) (info, warn int) {
		switch {
		case s < 60:
			return 40, 0
		case s < 70:
			return 2500 - 200*(s-60), 30
		default:
			return 350, 1
		}
	}
	const seconds = 180
	truth := map[int]float64{} // minute index → requests
	for s := range seconds {
		info, warn := perSecond(s)
		n := info + warn
		for i := range n {
			clock.now = time.Date(2026, 3, 1, 23, 58, s, 0, time.UTC).Add(time.Duration(i) * time.Second / time.Duration(n))
			if i < warn {
				log.Warn("request", zap.String("route", "/v1/bookings"), zap.String("method", "POST"), zap.Int("status", 503))
			} else {
				log.Info("request", zap.String("route", "/v1/offices/{office}/days"), zap.String("method", "GET"), zap.Int("status", 200))
			}
		}
		truth[s/60] += float64(n)
	}
	_ = log.Sync()

	read := func(sampling LogSampling) (*AccessLog, Profile) {
		t.Helper()
		if _, err := logFile.Seek(0, 0); err != nil {
			t.Fatal(err)
		}
		l := &AccessLog{Sampling: sampling}
		if err := l.Read(logFile); err != nil {
			t.Fatal(err)
		}
		p, err := l.Profile(ProfileImport{})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Points) != 3 || p.Points[0].At != 23*time.Hour+58*time.Minute {
			t.Fatalf("profile %v, want the three minutes from 23:58", p.Points)
		}
		return l, p
	}
	l, p := read(SlotdLogSampling)
	if l.Windows == 0 || l.Requests >= int(truth[0]+truth[1]+truth[2])/2 {
		t.Fatalf("the log was not sampled: %d lines for %v requests", l.Requests, truth)
	}
	for m := range 3 {
		got, want := p.Points[m].RatePerSecond*60, truth[m]
		t.Logf("minute %d: estimated %.0f requests, logged %v", m, got, want)
		// Each sampled window is off by at most half a sampling step
		// (and the warn lines sample apart: up to two windows a second).
		tolerance := float64(SlotdLogSampling.Thereafter) / 2 * 2 * 60
		if math.Abs(got-want) > tolerance {
			t.Errorf("minute %d: estimated %.0f requests, logged were %v, tolerance %.0f", m, got, want, tolerance)
		}
		if m > 0 && math.Abs(got-want) > want/50 {
			t.Errorf("minute %d: estimated %.0f requests, off by more than 2%% of %v", m, got, want)
		}
	}
	// Counting lines instead: the rush minute looks like a quarter of
	// itself.
	_, plain := read(LogSampling{})
	if got := plain.Points[1].RatePerSecond * 60; got > truth[1]/4 {
		t.Errorf("plain count of the rush minute %.0f: the sampling did not show (truth %v)", got, truth[1])
	}
}

// stepClock is a zapcore.Clock the test moves.
type stepClock struct{ now time.Time }

func (c *stepClock) Now() time.Time                         { return c.now }
func (c *stepClock) NewTicker(d time.Duration) *time.Ticker { return time.NewTicker(d) }

func FuzzProfileFromPrometheus(f *testing.F) {
	data, err := os.ReadFile("testdata/import/prometheus-range.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(data))                                                           // the fixture: two series, 30 s step
	f.Add(`[{"metric":{},"values":[[0,"1"],[300,"2"],[900,"3.25"]]}]`)            // promtool's bare array, 5 m step, a gap
	f.Add(`{"status":"error","errorType":"bad_data","error":"x"}`)                // a failed query
	f.Add(`{"status":"success","data":{"resultType":"vector","result":[]}}`)      // an instant query
	f.Add(`[{"values":[[1e10,"1"],[1,"1"]]}]`)                                    // a span far beyond a week
	f.Add(`[{"values":[[1.0005,"1e308"],[1.0006,"1e308"]]}]`)                     // huge rates, one millisecond apart
	f.Add(`[{"values":[[59.999,"1"],[60,"2"]]}]`)                                 // a minute boundary
	f.Add(`[{"values":[[1,"NaN"]]}]`)                                             // a value that is not finite
	f.Add("[{\"values\":[[1,\"\xff\"]]}]")                                        // bytes that are not UTF-8
	f.Add(`{"status":"success","data":{"resultType":"matrix","result":[{}]}} {}`) // a second value after the answer
	f.Fuzz(func(t *testing.T, in string) {
		for _, rebase := range []bool{false, true} {
			p, err := ProfileFromPrometheus(strings.NewReader(in), ProfileImport{Location: testtime.MSK, Rebase: rebase})
			if err != nil {
				if strings.ContainsAny(err.Error(), "\r\n") {
					t.Fatalf("error %q spans lines", err)
				}
				continue
			}
			checkImported(t, p)
		}
	})
}

func FuzzAccessLog(f *testing.F) {
	data, err := os.ReadFile("testdata/import/access.log")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(data))                                                                  // the fixture: formats of ts, a journal prefix, a blank line
	f.Add(`{"msg":"request","ts":"2026-03-01T00:00:00Z","level":"info"}`)                // one minimal line
	f.Add("{\"msg\":\"request\",\"ts\":1}\n{\"msg\":\"request\",\"ts\":0.5}\n")          // time going backwards
	f.Add("{\"msg\":\"request\",\"ts\":0}\n{\"msg\":\"request\",\"ts\":604799}\n")       // a week apart, the longest span
	f.Add(`{"msg":"request","ts":"2026-03-01T00:00:00+14:00","route":"x","method":"Ω"}`) // an extreme offset, odd fields
	f.Add(`{"msg":"other","ts":"garbage"}`)                                              // a line that is not a request
	f.Add("prefix {\"msg\":\"request\",\"ts\":1e10}")                                    // a time far in the future
	f.Add("{\"msg\":\"request\",\"ts\":\"\xff\"}")                                       // bytes that are not UTF-8
	f.Add(`{"msg":"request","ts":1,"level":{}}`)                                         // a level that is not a string
	f.Fuzz(func(t *testing.T, in string) {
		l := &AccessLog{Sampling: SlotdLogSampling}
		if err := l.Read(strings.NewReader(in)); err != nil {
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error %q spans lines", err)
			}
			return
		}
		if l.Estimated < float64(l.Requests) {
			t.Fatalf("estimated %v requests from %d lines", l.Estimated, l.Requests)
		}
		p, err := l.Profile(ProfileImport{Location: testtime.MSK})
		if err != nil {
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error %q spans lines", err)
			}
			return
		}
		checkImported(t, p)
	})
}

// checkImported fails unless p is what slotload -profile accepts: the
// pacer takes it and it round-trips through its CSV.
func checkImported(t *testing.T, p Profile) {
	t.Helper()
	if _, err := NewProfilePacer(p, 0); err != nil {
		t.Fatalf("imported profile rejected by the pacer: %v", err)
	}
	q, err := ParseProfile(strings.NewReader(p.String()))
	if err != nil || len(q.Points) != len(p.Points) {
		t.Fatalf("imported profile does not round-trip: %v", err)
	}
	for i := range p.Points {
		if q.Points[i] != p.Points[i] {
			t.Fatalf("round trip point %d: %v != %v", i, q.Points[i], p.Points[i])
		}
	}
}
