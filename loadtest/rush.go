package loadtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // office time zones on machines without a zoneinfo database

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"slotd/api"
	"slotd/client"
)

// The rush: a date is released at a chosen instant. Applicants arrive in an
// open-model spike (spikeProfile) that peaks at the release instant: the
// early ones poll the date's slots until it opens, then every applicant
// walks the flow (flow.go). The admin release is sent Lead after the start
// of the arrivals, from its own goroutine, so it is not held up by the load.

// releasePlan is the date a rush opens and where it stands.
type releasePlan struct {
	office   client.OfficeRecord
	loc      *time.Location
	date     string        // the date the applicants want
	release  bool          // false: already released (no admin key), rush on it as is
	lottery  time.Duration // the office's release lottery window; 0: none or unknown
	detected string        // how the date was chosen, for the report
}

// planRelease picks the rush date: cfg.ReleaseDate, or the first date
// after the released ones that has opening hours for the service. Without
// an admin key it picks the last released date and releases nothing.
func planRelease(ctx context.Context, cfg Config, portal, admin *apiClient) (releasePlan, error) {
	var plan releasePlan
	plan.loc = time.UTC
	if admin != nil {
		info, err := admin.office(ctx, cfg.Office)
		if err != nil {
			return plan, fmt.Errorf("cannot read office %q: %w", cfg.Office, err)
		}
		plan.office = info
		if loc, err := time.LoadLocation(info.Timezone); err == nil {
			plan.loc = loc
		}
		plan.lottery = lotteryWindow(info)
	}
	today := time.Now().In(plan.loc).Format(time.DateOnly)
	to := addDays(today, 400)
	days, err := portal.days(ctx, cfg.Office, cfg.Service, today, to)
	if err != nil && errCode(err) == api.CodeValidationFailed {
		days, err = portal.days(ctx, cfg.Office, cfg.Service, today, addDays(today, 90))
	}
	if err != nil {
		return plan, fmt.Errorf("cannot read released days of %q: %w", cfg.Office, err)
	}
	last := addDays(today, -1)
	for _, d := range days {
		last = max(last, d.Date.String())
	}
	switch {
	case cfg.ReleaseDate != "":
		plan.date, plan.release = cfg.ReleaseDate, admin != nil
		plan.detected = "date given"
	case admin == nil:
		if len(days) == 0 {
			return plan, errors.New("no admin key to release a date, and no date of the office is released")
		}
		plan.date, plan.detected = last, "last released date (no admin key: nothing released)"
	default:
		plan.date, plan.release = nextOpenDate(plan.office, cfg.Service, last), true
		plan.detected = "first date after " + last + " with hours"
	}
	return plan, nil
}

// nextOpenDate is the first date after last on which office o is open
// and offers service; last+1 when the office config says nothing.
func nextOpenDate(o client.OfficeRecord, service, last string) string {
	var weekdays []string
	for _, s := range o.Services {
		if s.Id == service && s.Weekdays != nil {
			for _, wd := range *s.Weekdays {
				weekdays = append(weekdays, string(wd))
			}
		}
	}
	var closures []string
	if o.Closures != nil {
		for _, c := range *o.Closures {
			closures = append(closures, c.String())
		}
	}
	for i := 1; i <= 60; i++ {
		d := addDays(last, i)
		t, _ := time.Parse(time.DateOnly, d)
		wd := strings.ToLower(t.Weekday().String()[:3])
		if len(o.Hours) > 0 && len(o.Hours[wd]) == 0 {
			continue
		}
		if len(weekdays) > 0 && !slices.Contains(weekdays, wd) || slices.Contains(closures, d) {
			continue
		}
		return d
	}
	return addDays(last, 1)
}

func addDays(date string, n int) string {
	t, err := time.Parse(time.DateOnly, date)
	if err != nil {
		panic("BUG: addDays on a bad date " + date)
	}
	return t.AddDate(0, 0, n).Format(time.DateOnly)
}

// releaseAt releases plan.date through admin at the instant at, and
// records what happened in note and, once the release succeeded, the
// instant its answer arrived in answered (both to be read after the
// returned channel closed); f.released flips once it answered.
func releaseAt(ctx context.Context, e *engine, admin *apiClient, plan releasePlan, at time.Time, f *flow,
	note *string, answered *time.Time) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer f.released.Store(true)
		select {
		case <-time.After(time.Until(at)):
		case <-ctx.Done():
			return
		}
		began := time.Now()
		err := admin.release(ctx, e.cfg.Office, plan.date)
		now := time.Now()
		took := now.Sub(began).Round(time.Microsecond)
		if err != nil {
			*note = fmt.Sprintf("release of %s through %s FAILED after %s: %v", e.cfg.Office, plan.date, took, err)
		} else {
			*answered = now
			*note = fmt.Sprintf("released %s through %s (%s) at +%s, answered in %s",
				e.cfg.Office, plan.date, plan.detected, began.Sub(e.stats.began).Round(time.Millisecond), took)
		}
		e.logf("%s", *note)
	}()
	return done
}

// runRush runs the rush scenario.
func runRush(ctx context.Context, e *engine, admin *apiClient) (string, error) {
	cfg := e.cfg
	plan, err := planRelease(ctx, cfg, e.api, admin)
	if err != nil {
		return "", err
	}
	e.days[CheckDay{Office: cfg.Office, Service: cfg.Service, Date: plan.date}] = true
	f := &flow{e: e}
	e.react = f.react
	e.arrive = func() request {
		a := e.newApplicant()
		a.date = plan.date
		r := e.slotsRequest(a, cfg.Office, plan.date)
		a.last = r
		return r
	}
	pacer, err := NewProfilePacer(spikeProfile(cfg.Applicants, cfg.Lead, cfg.Spread), uint64(cfg.Applicants))
	if err != nil {
		return "", err
	}
	e.logf("rush on %s %s %s: %d applicants over %s, peak at the release +%s", cfg.Office, cfg.Service,
		plan.date, cfg.Applicants, cfg.Lead+cfg.Spread, cfg.Lead)
	note := "rush on " + plan.date + " (" + plan.detected + ")"
	var (
		released   <-chan struct{}
		answeredAt time.Time
	)
	if plan.release {
		e.stats.began = time.Now()
		released = releaseAt(ctx, e, admin, plan, e.stats.began.Add(cfg.Lead), f, &note, &answeredAt)
	} else {
		f.released.Store(true)
	}
	e.attack(ctx, vegeta.Pacer(pacer), cfg.Duration)
	if released != nil {
		<-released
		if !answeredAt.IsZero() {
			e.stats.chart.markRelease(answeredAt.Sub(e.stats.began), plan.lottery)
		}
	}
	return note, nil
}
