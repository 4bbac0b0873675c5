package loadtest

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// The peak day: arrivals follow a per-minute rate profile of a whole day,
// compressed in time (Profile.Compress keeps the rates, so the replay is a
// sample of the day at its real instantaneous load; RatePerSecond rescales
// the profile's peak). Each arrival is an applicant who opens /days, picks
// one of the first dates with free seats, opens its slots, and either
// leaves (BrowseRatio: most visitors only look) or walks on to hold and
// confirm (flow.go).

// samplePeakDay is a migration centre's peak day: the midnight release
// spike, a quiet night, the morning peak and the evening decline.
//
//go:embed testdata/peakday-migration-centre.csv
var samplePeakDay []byte

// SampleProfile returns the shipped peak-day profile.
func SampleProfile() Profile {
	p, err := ParseProfile(bytes.NewReader(samplePeakDay))
	if err != nil {
		panic("BUG: the embedded peak-day profile does not parse: " + err.Error())
	}
	return p
}

func runPeakDay(ctx context.Context, e *engine, admin *apiClient) (string, error) {
	cfg := e.cfg
	profile := SampleProfile()
	if cfg.Profile != nil {
		profile = *cfg.Profile
	}
	profile = profile.Compress(cfg.Compress)
	if cfg.RatePerSecond > 0 && profile.PeakRate() > 0 {
		profile = profile.Scale(cfg.RatePerSecond / profile.PeakRate())
	}
	duration := profile.Length()
	if cfg.Duration > 0 {
		duration = min(duration, cfg.Duration)
	}
	pacer, err := NewProfilePacer(profile, uint64(cfg.Applicants))
	if err != nil {
		return "", err
	}
	loc := time.UTC
	if admin != nil {
		if info, err := admin.office(ctx, cfg.Office); err == nil {
			if l, err := time.LoadLocation(info.Timezone); err == nil {
				loc = l
			}
		}
	}
	today := time.Now().In(loc).Format(time.DateOnly)
	to := addDays(today, 60)
	f := &flow{e: e, pickDate: true}
	f.released.Store(true)
	e.react = f.react
	e.arrive = func() request {
		a := e.newApplicant()
		r := e.daysRequest(a, today, to)
		a.last = r
		return r
	}
	note := fmt.Sprintf("peak day compressed %gx: %s of profile (%.0f arrivals planned, peak %.0f/s)",
		cfg.Compress, duration, pacer.Hits(duration), profile.PeakRate())
	e.logf("%s", note)
	e.attack(ctx, vegeta.Pacer(pacer), duration)
	return note, nil
}
