package loadtest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// A Profile is a request rate over time: a list of points, each holding its
// rate until the next point (Step) or ramping linearly to it (not Step).
// The rate after the last point is zero, except that a Step profile holds
// the last point's rate for one StepLength. Immutable once built.
type Profile struct {
	Points []ProfilePoint
	// Step selects piecewise-constant rates; false interpolates linearly.
	Step bool
	// StepLength is how long the last point of a Step profile lasts.
	StepLength time.Duration
}

// ProfilePoint is one point of a Profile.
type ProfilePoint struct {
	At            time.Duration // offset from the start of the profile
	RatePerSecond float64       // requests per second at At; ≥ 0
}

// Limits of a profile file: a week of minutes is plenty for a replay.
const (
	profileRowsMax      = 7 * 24 * 60
	profileLineBytesMax = 256
)

// ParseProfile reads a per-minute rate profile from CSV:
//
//	# comment lines and blank lines are ignored
//	time,rate            <- optional header
//	00:00,1800           <- HH:MM office-local minute, requests per second
//	00:01,950
//
// Minutes must increase strictly; a row's rate holds until the next row,
// and the last row lasts one minute. Rates are finite and ≥ 0. HH may reach
// 167 (a week) so multi-day profiles are possible; minutes are 00–59.
func ParseProfile(r io.Reader) (Profile, error) {
	p := Profile{Step: true, StepLength: time.Minute}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, profileLineBytesMax), profileLineBytesMax)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Split(text, ",")
		if len(fields) != 2 {
			return Profile{}, fmt.Errorf("profile line %d: want 2 fields \"HH:MM,rate\", got %d", line, len(fields))
		}
		tf, rf := strings.TrimSpace(fields[0]), strings.TrimSpace(fields[1])
		if len(p.Points) == 0 && strings.EqualFold(tf, "time") && strings.EqualFold(rf, "rate") {
			continue // header
		}
		at, err := parseMinute(tf)
		if err != nil {
			return Profile{}, fmt.Errorf("profile line %d: %w", line, err)
		}
		rate, err := strconv.ParseFloat(rf, 64)
		if err != nil || math.IsNaN(rate) || math.IsInf(rate, 0) || rate < 0 {
			return Profile{}, fmt.Errorf("profile line %d: rate %q: want a finite number ≥ 0 (requests per second)", line, rf)
		}
		if n := len(p.Points); n > 0 && at <= p.Points[n-1].At {
			return Profile{}, fmt.Errorf("profile line %d: minute %s is not after the previous row", line, tf)
		}
		if len(p.Points) == profileRowsMax {
			return Profile{}, fmt.Errorf("profile line %d: more than %d rows", line, profileRowsMax)
		}
		p.Points = append(p.Points, ProfilePoint{At: at, RatePerSecond: rate})
	}
	if err := sc.Err(); err != nil {
		return Profile{}, fmt.Errorf("profile line %d: %w", line+1, err)
	}
	if len(p.Points) == 0 {
		return Profile{}, fmt.Errorf("profile: no rows")
	}
	return p, nil
}

// parseMinute parses "HH:MM" into an offset from 00:00.
func parseMinute(s string) (time.Duration, error) {
	hh, mm, ok := strings.Cut(s, ":")
	if !ok || len(mm) != 2 || len(hh) < 1 || len(hh) > 3 {
		return 0, fmt.Errorf("time %q: want HH:MM", s)
	}
	h, err1 := strconv.Atoi(hh)
	m, err2 := strconv.Atoi(mm)
	if err1 != nil || err2 != nil || h < 0 || h >= 7*24 || m < 0 || m > 59 || hh[0] == '+' || hh[0] == '-' {
		return 0, fmt.Errorf("time %q: want HH:MM with HH < 168 and MM < 60", s)
	}
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute, nil
}

// Compress returns the profile played factor times faster: offsets are
// divided by factor, rates are kept (a compressed replay is a sample of
// the day at the day's instantaneous rates). factor must be ≥ 1.
func (p Profile) Compress(factor float64) Profile {
	if !(factor >= 1) {
		panic(fmt.Sprintf("BUG: compress factor %v < 1", factor))
	}
	q := Profile{Step: p.Step, StepLength: time.Duration(float64(p.StepLength) / factor)}
	q.Points = make([]ProfilePoint, len(p.Points))
	for i, pt := range p.Points {
		q.Points[i] = ProfilePoint{At: time.Duration(float64(pt.At) / factor), RatePerSecond: pt.RatePerSecond}
	}
	return q
}

// Scale returns the profile with every rate multiplied by k ≥ 0.
func (p Profile) Scale(k float64) Profile {
	q := p
	q.Points = make([]ProfilePoint, len(p.Points))
	for i, pt := range p.Points {
		q.Points[i] = ProfilePoint{At: pt.At, RatePerSecond: pt.RatePerSecond * k}
	}
	return q
}

// PeakRate is the highest rate of the profile, in requests per second.
func (p Profile) PeakRate() float64 {
	peak := 0.0
	for _, pt := range p.Points {
		peak = max(peak, pt.RatePerSecond)
	}
	return peak
}

// Length is the time after which the profile's rate is zero for good.
func (p Profile) Length() time.Duration {
	if len(p.Points) == 0 {
		return 0
	}
	last := p.Points[len(p.Points)-1].At
	if p.Step {
		return last + p.StepLength
	}
	return last
}

// String renders the profile back as CSV (per-minute profiles only).
func (p Profile) String() string {
	var b bytes.Buffer
	b.WriteString("time,rate\n")
	for _, pt := range p.Points {
		m := int(pt.At / time.Minute)
		fmt.Fprintf(&b, "%02d:%02d,%s\n", m/60, m%60, strconv.FormatFloat(pt.RatePerSecond, 'g', -1, 64))
	}
	return b.String()
}
