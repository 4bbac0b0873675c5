package loadtest

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"
)

// Scenario names.
const (
	ScenarioRush    = "rush"
	ScenarioPeakDay = "peakday"
	ScenarioMixed   = "mixed"
	ScenarioBotRush = "botrush"
)

// Config is one load-test run. The zero value of a field means its
// default, stated per field; Run validates the result.
type Config struct {
	// URL is the base URL of the slotd API, e.g. http://127.0.0.1:8080.
	URL string
	// Key is an API key with the portal scope; every applicant request
	// carries it. Required.
	Key string
	// AdminKey is an API key with the admin scope, used to release the
	// rush date. Empty: rush and botrush release nothing and rush on the
	// last released date instead.
	AdminKey string

	// Scenario is rush, peakday, mixed or botrush.
	Scenario string
	// Office and Service the applicants book [msk-sakharovo, patent].
	Office, Service string

	// Applicants is the number of distinct applicants (rush, botrush), or a
	// cap on arrivals (peakday, mixed; 0: no cap besides Duration)
	// [rush 1000, botrush 1000].
	Applicants int
	// RatePerSecond is the arrival rate of mixed [200], or the peak rate
	// peakday's profile is rescaled to (0: the profile's own rates).
	RatePerSecond float64
	// Duration caps the arrival phase [mixed 10s; peakday the compressed
	// profile's length; rush and botrush: none, their spike ends by itself
	// after Applicants arrivals, in about Lead+Spread].
	Duration time.Duration

	// Profile is peakday's per-minute rate profile (ParseProfile) [the
	// sample migration-centre day in testdata].
	Profile *Profile
	// Compress plays the profile this many times faster, ≥ 1 [60].
	Compress float64

	// Lead is how long before the release instant rush applicants start
	// arriving and polling [1s]. Spread is how long after it they keep
	// arriving [2s].
	Lead, Spread time.Duration
	// ReleaseDate is the date (YYYY-MM-DD) the rush releases; empty: the
	// first date after the released ones with opening hours.
	ReleaseDate string

	// GiveUpRatio is the fraction of applicants who hold a seat and never
	// confirm, letting the hold expire, in [0, 1] [0.1; negative: none].
	GiveUpRatio float64
	// ConfirmThinkMax bounds the think time between hold and confirm
	// (uniform in [0, ConfirmThinkMax]) [500ms].
	ConfirmThinkMax time.Duration
	// PollInterval is how often an applicant refreshes availability while
	// waiting for the release [250ms]; PollsMax caps the refreshes [40].
	PollInterval time.Duration
	PollsMax     int
	// RetriesMax caps the retries of one step after slot_taken, 429 or
	// 503 [3]; RetryAfterMax caps one Retry-After wait [2s].
	RetriesMax    int
	RetryAfterMax time.Duration
	// BrowseRatio is the fraction of peakday arrivals who only look at
	// availability [0.6; negative: none].
	BrowseRatio float64

	// BotRatio is botrush's fraction of applicants that are bots [0.2;
	// negative: none];
	// BotFactor is how many more hold requests a bot sends inside the
	// release lottery than a human [10].
	BotRatio  float64
	BotFactor int

	// Mix weighs mixed's operations [60/20/10/5/5].
	Mix Mix

	// RequestTimeout bounds one request [10s]. DrainTimeout bounds the
	// follow-up steps after arrivals end [30s]. CheckTimeout bounds the
	// invariant check [60s].
	RequestTimeout, DrainTimeout, CheckTimeout time.Duration
	// WorkersMax caps vegeta's workers per attack, i.e. requests in flight
	// [4096]. ConnectionsMax caps open connections per attack [4096]: a
	// lottery parks every hold of its window, and a connection cap below
	// that would queue requests in the load generator, not the server.
	WorkersMax     uint64
	ConnectionsMax int

	// NoCheck skips the invariant check.
	NoCheck bool
	// OutDir receives the reports, the plot and the raw results
	// (ResultsFile); empty: none written.
	OutDir string
	// NoResults leaves the raw results out of OutDir.
	NoResults bool
	// Seed makes the applicants' choices reproducible; 0: random.
	Seed int64
	// Log receives progress lines; nil: discarded.
	Log io.Writer
}

// Mix weighs the operations of the mixed scenario; only ratios matter.
type Mix struct {
	Read, Hold, Confirm, Cancel, Reschedule int
}

func (m Mix) total() int { return m.Read + m.Hold + m.Confirm + m.Cancel + m.Reschedule }

// Limits of one run: every run is bounded in count and time.
const (
	applicantsMax    = 1_000_000
	durationMax      = 24 * time.Hour
	ratePerSecondMax = 1e6
	workersMax       = 1 << 16
)

// withDefaults returns cfg with zero fields replaced by their defaults.
func (cfg Config) withDefaults() Config {
	setDefault(&cfg.Office, "msk-sakharovo")
	setDefault(&cfg.Service, "patent")
	switch cfg.Scenario {
	case ScenarioRush, ScenarioBotRush:
		setDefault(&cfg.Applicants, 1000)
	case ScenarioMixed:
		setDefault(&cfg.RatePerSecond, 200)
		setDefault(&cfg.Duration, 10*time.Second)
	}
	setDefault(&cfg.Compress, 60)
	setDefault(&cfg.Lead, time.Second)
	setDefault(&cfg.Spread, 2*time.Second)
	ratio := func(p *float64, d float64) { // 0: default; negative: none
		setDefault(p, d)
		*p = max(*p, 0)
	}
	ratio(&cfg.GiveUpRatio, 0.1)
	setDefault(&cfg.ConfirmThinkMax, 500*time.Millisecond)
	setDefault(&cfg.PollInterval, 250*time.Millisecond)
	setDefault(&cfg.PollsMax, 40)
	setDefault(&cfg.RetriesMax, 3)
	setDefault(&cfg.RetryAfterMax, 2*time.Second)
	ratio(&cfg.BrowseRatio, 0.6)
	ratio(&cfg.BotRatio, 0.2)
	setDefault(&cfg.BotFactor, 10)
	setDefault(&cfg.Mix, Mix{Read: 60, Hold: 20, Confirm: 10, Cancel: 5, Reschedule: 5})
	setDefault(&cfg.RequestTimeout, 10*time.Second)
	setDefault(&cfg.DrainTimeout, 30*time.Second)
	setDefault(&cfg.CheckTimeout, 60*time.Second)
	setDefault(&cfg.WorkersMax, 4096)
	setDefault(&cfg.ConnectionsMax, 4096)
	return cfg
}

// setDefault sets *p to d when *p is its zero value.
func setDefault[T comparable](p *T, d T) {
	var zero T
	if *p == zero {
		*p = d
	}
}

// validate reports the first setting a user must fix.
func (cfg Config) validate() error {
	u, err := url.Parse(cfg.URL)
	switch {
	case cfg.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("url %q: want the API base URL, e.g. http://127.0.0.1:8080", cfg.URL)
	case cfg.Key == "":
		return errors.New("key: an API key with the portal scope is required")
	}
	switch cfg.Scenario {
	case ScenarioRush, ScenarioPeakDay, ScenarioMixed, ScenarioBotRush:
	default:
		return fmt.Errorf("scenario %q: want rush, peakday, mixed or botrush", cfg.Scenario)
	}
	frac := func(name string, v float64) error {
		if !(v >= 0 && v <= 1) {
			return fmt.Errorf("%s %v: want a fraction in [0, 1]", name, v)
		}
		return nil
	}
	positive := map[string]time.Duration{"lead": cfg.Lead, "spread": cfg.Spread, "poll interval": cfg.PollInterval,
		"retry-after cap": cfg.RetryAfterMax, "request timeout": cfg.RequestTimeout,
		"drain timeout": cfg.DrainTimeout, "check timeout": cfg.CheckTimeout}
	for name, d := range positive {
		if d < 0 || d > durationMax {
			return fmt.Errorf("%s %v: want a duration in [0, %v]", name, d, durationMax)
		}
	}
	switch {
	case cfg.Applicants < 0 || cfg.Applicants > applicantsMax:
		return fmt.Errorf("applicants %d: want 0..%d", cfg.Applicants, applicantsMax)
	case (cfg.Scenario == ScenarioRush || cfg.Scenario == ScenarioBotRush) && cfg.Applicants == 0:
		return fmt.Errorf("applicants: %s needs at least one applicant", cfg.Scenario)
	case cfg.RatePerSecond < 0 || cfg.RatePerSecond > ratePerSecondMax:
		return fmt.Errorf("rate %v/s: want 0..%v", cfg.RatePerSecond, ratePerSecondMax)
	case cfg.Scenario == ScenarioMixed && cfg.RatePerSecond == 0:
		return errors.New("rate: mixed needs a rate > 0")
	case cfg.Duration < 0 || cfg.Duration > durationMax:
		return fmt.Errorf("duration %v: want up to %v", cfg.Duration, durationMax)
	case cfg.Scenario == ScenarioMixed && cfg.Duration == 0 && cfg.Applicants == 0:
		return errors.New("duration: mixed needs a duration or an applicants cap")
	case !(cfg.Compress >= 1 && cfg.Compress <= 86400):
		return fmt.Errorf("compress %v: want a factor in [1, 86400]", cfg.Compress)
	case cfg.Lead+cfg.Spread <= 0:
		return errors.New("lead and spread: the rush needs a spike longer than zero")
	case cfg.ReleaseDate != "" && !validDate(cfg.ReleaseDate):
		return fmt.Errorf("release date %q: want YYYY-MM-DD", cfg.ReleaseDate)
	case cfg.PollsMax < 0 || cfg.PollsMax > 10_000:
		return fmt.Errorf("polls %d: want 0..10000", cfg.PollsMax)
	case cfg.RetriesMax < 0 || cfg.RetriesMax > 100:
		return fmt.Errorf("retries %d: want 0..100", cfg.RetriesMax)
	case cfg.BotFactor < 1 || cfg.BotFactor > 1000:
		return fmt.Errorf("bot factor %d: want 1..1000", cfg.BotFactor)
	case cfg.Mix.Read < 0 || cfg.Mix.Hold < 0 || cfg.Mix.Confirm < 0 || cfg.Mix.Cancel < 0 || cfg.Mix.Reschedule < 0 || cfg.Mix.total() == 0:
		return fmt.Errorf("mix %+v: want weights ≥ 0, not all zero", cfg.Mix)
	case cfg.WorkersMax > workersMax:
		return fmt.Errorf("workers %d: want up to %d", cfg.WorkersMax, workersMax)
	case cfg.ConnectionsMax < 1 || cfg.ConnectionsMax > workersMax:
		return fmt.Errorf("connections %d: want 1..%d", cfg.ConnectionsMax, workersMax)
	}
	for name, v := range map[string]float64{"give-up ratio": cfg.GiveUpRatio, "browse ratio": cfg.BrowseRatio, "bot ratio": cfg.BotRatio} {
		if err := frac(name, v); err != nil {
			return err
		}
	}
	if cfg.Scenario == ScenarioPeakDay && cfg.Profile != nil {
		if _, err := NewProfilePacer(*cfg.Profile, 0); err != nil {
			return fmt.Errorf("profile: %w", err)
		}
	}
	return nil
}

func validDate(s string) bool {
	_, err := time.Parse(time.DateOnly, s)
	return err == nil
}
