package loadtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// A real day into a rate profile. Two sources, each turned into requests
// per second for every minute of the day, then into the per-minute
// Profile that ParseProfile reads (one row a minute, dense: a minute with
// no traffic is a row of rate 0):
//
//   - ProfileFromPrometheus reads the JSON answer of a Prometheus range
//     query (GET /api/v1/query_range, or `promtool query range -o json`),
//     e.g. of sum(rate(slotd_http_requests_total[1m])). Series are added
//     up; a sample holds for one query step; minutes within a step of no
//     sample are 0 (the target was down or had no traffic).
//   - AccessLog reads slotd's JSON access log (httpapi: one line per
//     request, "msg":"request", with "ts", "level", "route", "method").
//     slotd's logger samples: per level and message, in each second the
//     first 100 lines are written, then every 100th (zap's sampler,
//     httpapi.NewLogger). Counting lines would flatten every rush to
//     about 100 requests a second, so AccessLog undoes the sampling: it
//     replays the sampler's windows from the timestamps, counts a line
//     past the first 100 of its window as the 100 requests it stands
//     for, and adds half a sampling step for the unlogged tail of a
//     window that reached sampling. The estimate of each window is off
//     by at most Thereafter/2 requests; below 100 requests a second it
//     is exact.
//
// The profile's HH:MM are minutes after local midnight (in Location) of
// the day the data begins, so a day exported from 00:00 reads as that
// day's clock; Rebase starts at 00:00 with the first minute instead, so
// that a replay of an export that begins at 09:13 does not first wait
// through nine quiet hours. Offsets count elapsed time: on the night
// clocks change, the rows after the change are an hour off the wall
// clock.

// ProfileImport says how data becomes a profile. The zero value reads
// minutes in UTC, from midnight.
type ProfileImport struct {
	// Location is the time zone of the profile's HH:MM, the office's
	// (nil: UTC).
	Location *time.Location
	// Rebase starts the profile at 00:00 with the first minute of data.
	Rebase bool
}

// Limits of the imports.
const (
	// prometheusBytesMax bounds a range-query export: a week of one
	// series at a 15 s step is about 1.5 MB; many more series should be
	// summed in the query.
	prometheusBytesMax = 64 << 20
	// prometheusSamplesMax bounds the samples of all series together.
	prometheusSamplesMax = 4 << 20
	// accessLogLineBytesMax bounds one access log line (slotd's are
	// about 250 bytes).
	accessLogLineBytesMax = 64 << 10
	// profileSpanMax is the longest span a profile covers (HH < 168).
	profileSpanMax = 7 * 24 * time.Hour
	// sampleRateMax bounds one sample's rate, requests per second: a
	// thousand times the most slotload generates.
	sampleRateMax = 1e9
	// logLevelsMax bounds the distinct levels of request lines (zap has
	// seven).
	logLevelsMax = 16
)

// ProfileFromPrometheus reads a Prometheus range-query answer (the JSON of
// /api/v1/query_range, or its bare "result" array as promtool writes it)
// into a per-minute profile. Values are requests per second (a rate()).
func ProfileFromPrometheus(r io.Reader, opts ProfileImport) (Profile, error) {
	data, err := io.ReadAll(io.LimitReader(r, prometheusBytesMax+1))
	if err != nil {
		return Profile{}, err
	}
	if len(data) > prometheusBytesMax {
		return Profile{}, fmt.Errorf("larger than %d MiB: sum the series in the query or use a longer step", prometheusBytesMax>>20)
	}
	series, err := decodePrometheus(data)
	if err != nil {
		return Profile{}, err
	}
	// Total rate per timestamp (ms): the series added up.
	total := map[int64]float64{}
	samples := 0
	for i, s := range series {
		for j, v := range s.Values {
			samples++
			if samples > prometheusSamplesMax {
				return Profile{}, fmt.Errorf("more than %d samples: use a longer step or a shorter range", prometheusSamplesMax)
			}
			ms, rate, err := v.parse()
			if err != nil {
				return Profile{}, fmt.Errorf("series %d, sample %d: %w", i+1, j+1, err)
			}
			total[ms] += rate
		}
	}
	if len(total) == 0 {
		return Profile{}, errors.New("no samples: the query matched no series")
	}
	stamps := make([]int64, 0, len(total))
	for ms := range total {
		stamps = append(stamps, ms)
	}
	sort.Slice(stamps, func(i, j int) bool { return stamps[i] < stamps[j] })
	stepMs := int64(time.Minute / time.Millisecond)
	for i := 1; i < len(stamps); i++ {
		if i == 1 || stamps[i]-stamps[i-1] < stepMs {
			stepMs = stamps[i] - stamps[i-1]
		}
	}
	const minuteMs = int64(time.Minute / time.Millisecond)
	first, last := floorDiv(stamps[0], minuteMs), floorDiv(stamps[len(stamps)-1], minuteMs)
	if err := checkSpan(first, last); err != nil {
		return Profile{}, err
	}
	rates := make([]float64, last-first+1)
	k := 0 // next sample
	for m := range rates {
		start := (first + int64(m)) * minuteMs
		sum, n := 0.0, 0
		for k < len(stamps) && stamps[k] < start+minuteMs {
			sum += total[stamps[k]]
			n++
			k++
		}
		switch {
		case n > 0:
			rates[m] = sum / float64(n)
		case k > 0 && stamps[k-1]+stepMs > start:
			rates[m] = total[stamps[k-1]] // the previous sample holds
		}
	}
	return minuteProfile(first, rates, opts)
}

// promSeries is one series of a range-query answer.
type promSeries struct {
	Metric map[string]string `json:"metric"`
	Values []promSample      `json:"values"`
}

// promSample is [unix seconds, "value"].
type promSample [2]json.RawMessage

// parse returns the sample's time in unix milliseconds and its value.
func (s promSample) parse() (int64, float64, error) {
	var sec float64
	if err := json.Unmarshal(s[0], &sec); err != nil || math.IsNaN(sec) || math.IsInf(sec, 0) ||
		sec < 0 || sec > 1e11 {
		return 0, 0, fmt.Errorf("time %.40q: want unix seconds", s[0])
	}
	ms := int64(math.Round(sec * 1000))
	at := time.UnixMilli(ms).UTC().Format(time.RFC3339)
	var text string
	if err := json.Unmarshal(s[1], &text); err != nil {
		return 0, 0, fmt.Errorf("at %s: value %.40q: want a number in a string", at, s[1])
	}
	v, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsNaN(v) || v < 0 || v > sampleRateMax {
		return 0, 0, fmt.Errorf("at %s: value %q: want a finite rate ≥ 0 and ≤ %g (requests per second)", at, text, sampleRateMax)
	}
	return ms, v, nil
}

// decodePrometheus accepts the API's envelope or a bare result array.
func decodePrometheus(data []byte) ([]promSeries, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var series []promSeries
		if err := strictJSON(trimmed, &series); err != nil {
			return nil, fmt.Errorf("not a Prometheus result array: %w", err)
		}
		return series, nil
	}
	var env struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      *struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := strictJSON(trimmed, &env); err != nil {
		return nil, fmt.Errorf("not a Prometheus query answer: %w", err)
	}
	switch {
	case env.Status == "error":
		return nil, fmt.Errorf("the query failed: %.200q: %.200q", env.ErrorType, env.Error)
	case env.Status != "success":
		return nil, fmt.Errorf("status %.40q: want a Prometheus query answer with status \"success\"", env.Status)
	case env.Data == nil:
		return nil, errors.New("no \"data\": want a Prometheus query answer")
	case env.Data.ResultType != "matrix":
		return nil, fmt.Errorf("result type %.40q: want \"matrix\", the answer of a range query (/api/v1/query_range)", env.Data.ResultType)
	}
	var series []promSeries
	if err := strictJSON(env.Data.Result, &series); err != nil {
		return nil, fmt.Errorf("data.result: %w", err)
	}
	return series, nil
}

// strictJSON decodes exactly one JSON value into v.
func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return oneLine(err)
	}
	if dec.More() {
		return errors.New("more than one JSON value")
	}
	return nil
}

// oneLine keeps an error message on one line.
func oneLine(err error) error {
	if msg := err.Error(); strings.ContainsAny(msg, "\r\n") {
		return errors.New(strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(msg))
	}
	return err
}

// LogSampling is how the logger that wrote an access log sampled it:
// zap's sampler, per level and message, in windows of Tick from the first
// line after the previous window, writes the First lines, then every
// Thereafter-th. The zero value: every request was logged.
type LogSampling struct {
	Tick              time.Duration
	First, Thereafter int
}

// SlotdLogSampling is the sampling of slotd's logger (httpapi.NewLogger).
var SlotdLogSampling = LogSampling{Tick: time.Second, First: 100, Thereafter: 100}

// on reports whether sampling is set.
func (s LogSampling) on() bool { return s.Tick > 0 && s.First > 0 }

// AccessLog counts the requests of access logs per minute. Each Read is
// one logger's output (one slotd process): read every node's log of a
// cluster into one AccessLog to get the cluster's profile. Not safe for
// concurrent use.
type AccessLog struct {
	// Sampling is the sampling of the logs' writer [none]: set it to
	// SlotdLogSampling for slotd's logs.
	Sampling LogSampling
	// Route and Method keep only the requests of that route pattern (as
	// the log and the metrics name it, e.g. /v1/offices/{office}/days)
	// and method; empty: all.
	Route, Method string

	minutes     map[int64]float64 // unix minute → requests
	first, last int64             // the earliest and latest minute of any request line
	seen        bool              // whether first and last are set
	// Lines counts the lines read, Requests the request lines among them
	// that passed the filter, Windows the sampler windows that reached
	// sampling; Estimated is the requests they stand for.
	Lines, Requests, Windows int
	Estimated                float64
}

// accessLine is what AccessLog reads of a log line.
type accessLine struct {
	TS     json.RawMessage `json:"ts"`
	Level  string          `json:"level"`
	Msg    string          `json:"msg"`
	Route  string          `json:"route"`
	Method string          `json:"method"`
}

// samplerWindow replays one sampler counter (one level of the request
// message).
type samplerWindow struct {
	end        time.Time // the window ends before this
	n          int       // lines logged in it so far
	lastMinute int64     // minute of its last line
	lastKept   bool      // whether that line passed the filter
}

// Read adds the request lines of one log. A line is one JSON object,
// after an optional prefix without '{' (journalctl's "Mar 01 host
// slotd[42]: "); blank lines are skipped; other lines are an error that
// names the line. Lines whose msg is not "request" are read and
// skipped.
func (l *AccessLog) Read(r io.Reader) error {
	if l.minutes == nil {
		l.minutes = map[int64]float64{}
	}
	if l.Sampling.on() && l.Sampling.Thereafter < 0 {
		return fmt.Errorf("sampling: thereafter %d < 0", l.Sampling.Thereafter)
	}
	windows := map[string]*samplerWindow{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), accessLogLineBytesMax)
	line := 0
	for sc.Scan() {
		line++
		l.Lines++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		i := bytes.IndexByte(text, '{')
		if i < 0 {
			return fmt.Errorf("line %d: not a JSON log line", line)
		}
		var al accessLine
		if err := strictJSON(text[i:], &al); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		if al.Msg != "request" {
			continue
		}
		at, err := parseLogTime(al.TS)
		if err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		minute := floorDiv(at.Unix(), 60)
		if !l.seen {
			l.first, l.last, l.seen = minute, minute, true
		}
		l.first, l.last = min(l.first, minute), max(l.last, minute)
		if err := checkSpan(l.first, l.last); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		keep := (l.Route == "" || al.Route == l.Route) && (l.Method == "" || strings.EqualFold(al.Method, l.Method))
		weight := 1.0
		if l.Sampling.on() {
			w := windows[al.Level]
			if w == nil {
				if len(windows) == logLevelsMax {
					return fmt.Errorf("line %d: more than %d log levels", line, logLevelsMax)
				}
				w = &samplerWindow{}
				windows[al.Level] = w
			}
			if w.n == 0 || !at.Before(w.end) {
				l.closeWindow(w)
				*w = samplerWindow{end: at.Add(l.Sampling.Tick)}
			}
			w.n++
			if w.n > l.Sampling.First {
				weight = float64(max(l.Sampling.Thereafter, 1))
			}
			w.lastMinute, w.lastKept = minute, keep
		}
		if keep {
			l.minutes[minute] += weight
			l.Requests++
			l.Estimated += weight
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("line %d: longer than %d bytes", line+1, accessLogLineBytesMax)
		}
		return fmt.Errorf("line %d: %w", line+1, err)
	}
	for _, w := range windows {
		l.closeWindow(w)
	}
	return nil
}

// closeWindow adds the unlogged tail of a window that reached sampling:
// between 0 and Thereafter-1 requests came after its last logged line,
// half of that on average.
func (l *AccessLog) closeWindow(w *samplerWindow) {
	if w.n < l.Sampling.First || l.Sampling.Thereafter <= 1 {
		return
	}
	l.Windows++
	if w.lastKept {
		tail := float64(l.Sampling.Thereafter-1) / 2
		l.minutes[w.lastMinute] += tail
		l.Estimated += tail
	}
}

// parseLogTime reads zap's "ts": an RFC 3339 string (slotd's encoder) or
// unix seconds (zap's default production encoder).
func parseLogTime(raw json.RawMessage) (time.Time, error) {
	if len(raw) == 0 {
		return time.Time{}, errors.New("no \"ts\"")
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return time.Time{}, fmt.Errorf("ts %.40q: %w", raw, oneLine(err))
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil || t.Year() < 1970 || t.Year() > 5000 {
			return time.Time{}, fmt.Errorf("ts %.40q: want an RFC 3339 time", s)
		}
		return t, nil
	}
	var sec float64
	if err := json.Unmarshal(raw, &sec); err != nil || math.IsNaN(sec) || sec < 0 || sec > 1e11 {
		return time.Time{}, fmt.Errorf("ts %.40q: want an RFC 3339 time or unix seconds", raw)
	}
	whole, frac := math.Modf(sec)
	return time.Unix(int64(whole), int64(frac*1e9)), nil
}

// Profile returns the requests per second of every minute from the first
// to the last that had requests.
func (l *AccessLog) Profile(opts ProfileImport) (Profile, error) {
	if len(l.minutes) == 0 {
		return Profile{}, errors.New("no request lines (\"msg\":\"request\") matched")
	}
	first, last := int64(math.MaxInt64), int64(math.MinInt64)
	for m := range l.minutes {
		first, last = min(first, m), max(last, m)
	}
	rates := make([]float64, last-first+1)
	for m, n := range l.minutes {
		rates[m-first] = n / 60
	}
	return minuteProfile(first, rates, opts)
}

// checkSpan fails when minutes first..last span more than a profile may.
func checkSpan(first, last int64) error {
	if last-first >= int64(profileSpanMax/time.Minute) {
		return fmt.Errorf("the data spans %s, more than a profile's %s", time.Duration(last-first+1)*time.Minute, profileSpanMax)
	}
	return nil
}

// minuteProfile makes the profile of rates[i], the rate of unix minute
// first+i.
func minuteProfile(first int64, rates []float64, opts ProfileImport) (Profile, error) {
	loc := opts.Location
	if loc == nil {
		loc = time.UTC
	}
	start := time.Unix(first*60, 0).In(loc)
	var offset time.Duration
	if !opts.Rebase {
		y, m, d := start.Date()
		offset = start.Sub(time.Date(y, m, d, 0, 0, 0, 0, loc)).Truncate(time.Minute)
	}
	if offset+time.Duration(len(rates))*time.Minute > profileSpanMax {
		return Profile{}, fmt.Errorf("the data ends more than %s after midnight of its first day %s: start it at its first minute (rebase)", profileSpanMax, start.Format(time.DateOnly))
	}
	p := Profile{Step: true, StepLength: time.Minute, Points: make([]ProfilePoint, len(rates))}
	for i, r := range rates {
		p.Points[i] = ProfilePoint{At: offset + time.Duration(i)*time.Minute, RatePerSecond: math.Round(r*1000) / 1000}
	}
	return p, nil
}

// floorDiv is a/b rounded towards minus infinity (b > 0).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
