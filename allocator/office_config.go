package allocator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Limits on office configuration. Every one is a named refusal, never a
// silent truncation.
const (
	windowsMax         = 256  // service desks per office
	servicesMax        = 64   // services per office
	closuresMax        = 1024 // closure dates per office
	horizonDaysMax     = 366  // days ahead: a year, leap day included
	intervalsPerDayMax = 8    // opening intervals per weekday
	slotMinutesMin     = 5    // 288 steps a day at most: 5 words per window
	textBytesMax       = 512  // bytes of a name, region, city or address
	// slotMinutesMax is the coarsest grid step, in minutes: four hours,
	// so an office day keeps several seats per desk.
	slotMinutesMax = 240
	// serviceSlotsMax is the longest service run, in grid steps: one
	// bitmap word's worth, so a claim touches at most two words of a
	// window's bitmap (calendar.go).
	serviceSlotsMax = 64
	// policyDurationMax bounds every duration of a policy: 400 days
	// (9600h), longer than any horizon (horizonDaysMax) so every cutoff
	// and penalty can reach past the last bookable date, yet short enough
	// that an instant plus any of them stays far inside the int64
	// nanoseconds the engine keeps instants in.
	policyDurationMax = 400 * 24 * time.Hour
	// holdTTLMin is the shortest hold: a hold must outlive the round
	// trip of the confirmation that follows it.
	holdTTLMin = time.Second
	// releaseLotteryMax is the longest release lottery: its entries wait
	// unanswered until the draw (lottery.go), so the window bounds that
	// wait.
	releaseLotteryMax = time.Minute
	// reschedulesMax bounds max_reschedules, a count per booking: the
	// record keeps the count in a uint8 (BookingRecord.Reschedules).
	reschedulesMax = 100
	// activePerApplicantMax bounds max_active_per_applicant, a count of
	// bookings: above a hundred the limit limits no applicant, so a
	// larger number is a mistake, not a policy.
	activePerApplicantMax = 100
	// penaltyCountMax bounds cancel_penalty.count, a count of cancels
	// and no-shows in the penalty window: a penalty that waits for more
	// than a hundred blocks no one; 0, not a huge count, turns it off.
	penaltyCountMax = 100
	// workingDaysMax bounds the working-day cutoffs: a year of working
	// days reaches past any horizon (horizonDaysMax), and it bounds the
	// days workingDaysBefore visits.
	workingDaysMax = horizonDaysMax
	// serviceDocumentsMax bounds a service's documents, a count of lines
	// printed on its ticket: an A5 ticket holds no more.
	serviceDocumentsMax = 16
	// documentBytesMax bounds one document line, in bytes: a line or two
	// of a ticket.
	documentBytesMax = 256
	// serviceNamesMax bounds a service's translated names, a count of
	// languages: the offices serve a handful, and every name is stored
	// and sent with the office.
	serviceNamesMax = 8
)

// Grid arithmetic of the compiled layout.
const (
	// minutesPerDay is the wall-clock day the grid is drawn on: a
	// slot_minutes divides it, and its labels are the steps of a day
	// without a clock change.
	minutesPerDay = 24 * 60
	// wordBits is the steps per bitmap word: a uint64, a bit per step.
	wordBits = 64
)

// StepsMax is the most grid steps a day has (the finest grid on the
// longest day, dead steps included: dayclock.go): a bound for callers of
// AppendSlotSteps that keep the starts on the stack.
const StepsMax = dayMinutesMax/slotMinutesMin + deadStepsMax

// idPattern is the shape of office and service ids: they appear in URLs and
// booking numbers.
var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// languagePattern is a key of a service's names: a primary language
// subtag (ISO 639, as in an Accept-Language tag), lowercase.
var languagePattern = regexp.MustCompile(`^[a-z]{2,3}$`)

// Duration is a time.Duration that reads and writes Go duration strings
// ("10m", "24h") in JSON.
type Duration time.Duration

// MarshalJSON writes the Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%w: duration must be a string such as \"10m\"", ErrValidation)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%w: duration %q: use a Go duration such as \"10m\" or \"24h\"", ErrValidation, s)
	}
	*d = Duration(v)
	return nil
}

// OfficeConfig is the shape of PUT /v1/offices/{id} and of the -offices file.
// Decode it with DecodeOfficeConfig so omitted policy fields take defaults and
// unknown fields are refused.
type OfficeConfig struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Region   string `json:"region"`
	City     string `json:"city"`
	Address  string `json:"address"`
	Timezone string `json:"timezone"` // IANA name, e.g. Europe/Moscow
	// SlotMinutes is the grid step in minutes; it divides every hours interval.
	SlotMinutes int `json:"slot_minutes"`
	// Windows is the number of parallel desks: seats per grid step.
	Windows  int                 `json:"windows"`
	Hours    map[string][]string `json:"hours"`    // "mon": ["09:00-13:00", …]
	Closures []string            `json:"closures"` // YYYY-MM-DD, office-local
	Services []ServiceConfig     `json:"services"`
	Policy   PolicyConfig        `json:"policy"`
}

// ServiceConfig is one service an office offers.
type ServiceConfig struct {
	ID            string   `json:"id"`
	Name          string   `json:"name"`
	Slots         int      `json:"slots"`    // run length in grid steps, ≥ 1
	Weekdays      []string `json:"weekdays"` // empty: every day the office is open
	Reschedulable bool     `json:"reschedulable"`
	// OnlineCancel says whether an applicant may cancel a confirmed
	// booking through its portal; false leaves the cancel to an operator
	// (force-cancel). Nil, the field omitted, means true: the default,
	// and the rule before the field existed.
	OnlineCancel *bool `json:"online_cancel,omitempty"`
	// Documents lists what an applicant brings, one line each, as the
	// ticket prints them.
	Documents []string `json:"documents,omitempty"`
	// Names maps a primary language tag ("ru", "en") to the service's
	// name in that language; Name stays the name for any other.
	Names map[string]string `json:"names,omitempty"`
	// RequiresApproval makes an applicant's confirm wait for an
	// operator's approval (awaiting_approval) instead of confirming.
	// False, the field omitted, confirms at once: the rule before the
	// field existed.
	RequiresApproval bool `json:"requires_approval,omitempty"`
}

// onlineCancel is OnlineCancel with its default.
func (sc *ServiceConfig) onlineCancel() bool {
	return sc.OnlineCancel == nil || *sc.OnlineCancel
}

// PolicyConfig is an office's booking policy. Zero values are meaningful
// (a zero cancel_cutoff allows cancelling until the start), so defaults come
// from DefaultPolicy, not from zero.
type PolicyConfig struct {
	HorizonDays           int           `json:"horizon_days"`
	ReleaseTime           string        `json:"release_time"` // HH:MM office-local
	HoldTTL               Duration      `json:"hold_ttl"`
	CancelCutoff          Duration      `json:"cancel_cutoff"`
	LateCancelFloor       Duration      `json:"late_cancel_floor"`
	RescheduleCutoff      Duration      `json:"reschedule_cutoff"`
	MaxReschedules        int           `json:"max_reschedules"`
	MaxActivePerApplicant int           `json:"max_active_per_applicant"`
	CancelPenalty         PenaltyConfig `json:"cancel_penalty"`
	NoShowGrace           Duration      `json:"no_show_grace"`
	ReleaseLottery        Duration      `json:"release_lottery"`
	ReminderBefore        Duration      `json:"reminder_before"`
	// MinNotice is how long before its start a seat stops being offered
	// and booked: a start must come later than now + min_notice. Zero
	// (the default) books until the start, the rule before the field
	// existed, so offices stored without it keep their behaviour.
	MinNotice Duration `json:"min_notice"`
	// CancelCutoffWorkingDays and RescheduleCutoffWorkingDays, counts of
	// the office's working days (workingDaysBefore), add to cancel_cutoff
	// and reschedule_cutoff: a cancel or a reschedule must come on or
	// before the Nth working day before the start's date, besides the
	// duration. Zero (the default) turns the count off.
	CancelCutoffWorkingDays     int `json:"cancel_cutoff_working_days"`
	RescheduleCutoffWorkingDays int `json:"reschedule_cutoff_working_days"`
}

// PenaltyConfig: Count applicant cancels or no-shows within Window block new
// bookings for Block. A zero Count disables the penalty.
type PenaltyConfig struct {
	Count  int      `json:"count"`
	Window Duration `json:"window"`
	Block  Duration `json:"block"`
}

// DefaultPolicy returns the defaults of DESIGN §1.
func DefaultPolicy() PolicyConfig {
	return PolicyConfig{
		HorizonDays:           30,
		ReleaseTime:           "00:00",
		HoldTTL:               Duration(10 * time.Minute),
		CancelCutoff:          Duration(24 * time.Hour),
		LateCancelFloor:       Duration(12 * time.Hour),
		RescheduleCutoff:      Duration(24 * time.Hour),
		MaxReschedules:        2,
		MaxActivePerApplicant: 3,
		CancelPenalty:         PenaltyConfig{Count: 3, Window: Duration(720 * time.Hour), Block: Duration(168 * time.Hour)},
		NoShowGrace:           Duration(15 * time.Minute),
		ReleaseLottery:        0,
		ReminderBefore:        Duration(24 * time.Hour),
	}
}

// DecodeOfficeConfig decodes one office object: unknown fields are refused,
// omitted policy fields take DefaultPolicy's values.
func DecodeOfficeConfig(data []byte) (OfficeConfig, error) {
	cfg := OfficeConfig{Policy: DefaultPolicy()}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return OfficeConfig{}, fmt.Errorf("%w: office: %s", ErrValidation, jsonProblem(err))
	}
	if dec.More() {
		return OfficeConfig{}, fmt.Errorf("%w: office: trailing data after the object", ErrValidation)
	}
	return cfg, nil
}

// DecodeOfficeConfigs decodes a JSON array of office objects (the -offices file).
func DecodeOfficeConfigs(data []byte) ([]OfficeConfig, error) {
	var raws []json.RawMessage
	if err := json.Unmarshal(data, &raws); err != nil {
		return nil, fmt.Errorf("%w: offices: expected a JSON array of office objects: %s", ErrValidation, jsonProblem(err))
	}
	out := make([]OfficeConfig, 0, len(raws))
	for i, raw := range raws {
		cfg, err := DecodeOfficeConfig(raw)
		if err != nil {
			return nil, fmt.Errorf("offices[%d]: %w", i, err)
		}
		out = append(out, cfg)
	}
	return out, nil
}

// jsonProblem turns a decoding error into a sentence without Go type names.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if ok := asType(err, &te); ok {
		return fmt.Sprintf("field %q has the wrong type (got JSON %s)", te.Field, te.Value)
	}
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "json: ")
	return msg
}

var weekdayNames = [7]string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

func parseWeekday(s string) (time.Weekday, bool) {
	for i, n := range weekdayNames {
		if n == s {
			return time.Weekday(i), true
		}
	}
	return 0, false
}

// parseClock parses HH:MM into minutes of the day; 24:00 is allowed when end is set.
func parseClock(s string, end bool) (int, bool) {
	if len(s) != 5 || s[2] != ':' {
		return 0, false
	}
	h, m := 0, 0
	for _, c := range s[0:2] {
		if c < '0' || c > '9' {
			return 0, false
		}
		h = h*10 + int(c-'0')
	}
	for _, c := range s[3:5] {
		if c < '0' || c > '9' {
			return 0, false
		}
		m = m*10 + int(c-'0')
	}
	if m > 59 || h > 24 || (h == 24 && (m != 0 || !end)) {
		return 0, false
	}
	return h*60 + m, true
}

// layout is the compiled, immutable form of an OfficeConfig.
// It is shared read-only by all goroutines.
type layout struct {
	cfg         OfficeConfig
	loc         *time.Location
	stepMinutes int
	steps       int // grid labels per day; the steps of a day without a clock change (dayclock.go)
	stepsMax    int // the most steps of any day: the longest day's, gaps included
	words       int // uint64 words per window bitmap, for stepsMax steps
	windows     int
	open        [7][]uint64 // per weekday: 1 = grid label within opening hours
	openSteps   [7]int      // popcount of open
	services    map[string]*service
	policy      policy
	releaseMin  int           // minute of day of the daily release
	closures    map[Date]bool // closed dates
}

// service is the compiled form of a ServiceConfig.
type service struct {
	id            string
	name          string
	slots         int
	weekdays      [7]bool
	reschedulable bool
	onlineCancel  bool
	// requiresApproval: a confirm waits for an operator's approval
	// (StatusAwaitingApproval).
	requiresApproval bool
}

// policy is PolicyConfig with time.Duration fields.
type policy struct {
	horizonDays           int
	holdTTL               time.Duration
	cancelCutoff          time.Duration
	lateCancelFloor       time.Duration
	rescheduleCutoff      time.Duration
	maxReschedules        int
	maxActivePerApplicant int
	penaltyCount          int
	penaltyWindow         time.Duration
	penaltyBlock          time.Duration
	noShowGrace           time.Duration
	releaseLottery        time.Duration
	reminderBefore        time.Duration
	minNotice             time.Duration
	// cancelCutoffWorkingDays and rescheduleCutoffWorkingDays: 0 is off.
	cancelCutoffWorkingDays     int
	rescheduleCutoffWorkingDays int
}

// Validate checks cfg and returns the first problem as an ErrValidation
// wrapped with a sentence an office administrator can act on.
func (cfg *OfficeConfig) Validate() error {
	_, err := compileLayout(*cfg)
	return err
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrValidation}, args...)...)
}

// compileLayout validates cfg and builds its layout. Each concern of the
// config (texts, zone, grid, hours, closures, services, policy) compiles
// from its own fields alone; the first problem found is returned.
func compileLayout(cfg OfficeConfig) (*layout, error) {
	if err := checkOfficeText(cfg); err != nil {
		return nil, err
	}
	loc, err := compileZone(cfg.ID, cfg.Timezone)
	if err != nil {
		return nil, err
	}
	g, err := compileGrid(cfg.ID, cfg.SlotMinutes, cfg.Windows)
	if err != nil {
		return nil, err
	}
	open, openSteps, err := compileHours(cfg.ID, cfg.Hours, g)
	if err != nil {
		return nil, err
	}
	closures, err := compileClosures(cfg.ID, cfg.Closures)
	if err != nil {
		return nil, err
	}
	services, err := compileServices(cfg.ID, cfg.Services)
	if err != nil {
		return nil, err
	}
	pol, releaseMin, err := compilePolicy(cfg.ID, cfg.Policy)
	if err != nil {
		return nil, err
	}
	return &layout{
		cfg:         cfg,
		loc:         loc,
		stepMinutes: g.stepMinutes,
		steps:       g.steps,
		stepsMax:    g.stepsMax,
		words:       g.words,
		windows:     g.windows,
		open:        open,
		openSteps:   openSteps,
		services:    services,
		policy:      pol,
		releaseMin:  releaseMin,
		closures:    closures,
	}, nil
}

// checkOfficeText checks the office's id and its texts.
func checkOfficeText(cfg OfficeConfig) error {
	if !idPattern.MatchString(cfg.ID) {
		return invalid("office id %q: use 1-63 lowercase letters, digits and dashes, starting with a letter or digit", cfg.ID)
	}
	for name, v := range map[string]string{"name": cfg.Name, "region": cfg.Region, "city": cfg.City, "address": cfg.Address} {
		if len(v) > textBytesMax {
			return invalid("office %s: %s is longer than %d bytes", cfg.ID, name, textBytesMax)
		}
	}
	if cfg.Name == "" {
		return invalid("office %s: name is required", cfg.ID)
	}
	if cfg.Region == "" {
		return invalid("office %s: region is required", cfg.ID)
	}
	return nil
}

// compileZone loads the office's time zone. "Local" is refused: it names
// the zone of whatever machine runs slotd, not the office's.
func compileZone(officeID, tz string) (*time.Location, error) {
	if tz == "" {
		return nil, invalid("office %s: timezone is required (an IANA name such as Europe/Moscow)", officeID)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil || tz == "Local" {
		return nil, invalid("office %s: unknown timezone %q (use an IANA name such as Europe/Moscow)", officeID, tz)
	}
	return loc, nil
}

// seatGrid is the seat arithmetic of a slot_minutes and a window count.
type seatGrid struct {
	stepMinutes int
	steps       int // grid labels per day (layout.steps)
	stepsMax    int // the most steps of any day (layout.stepsMax)
	words       int // uint64 words per window bitmap, for stepsMax steps
	windows     int
}

// compileGrid checks the grid step and the window count and derives the
// sizes of a day's bitmaps from them.
func compileGrid(officeID string, slotMinutes, windows int) (seatGrid, error) {
	if slotMinutes < slotMinutesMin || slotMinutes > slotMinutesMax || minutesPerDay%slotMinutes != 0 {
		return seatGrid{}, invalid("office %s: slot_minutes %d must divide %d and lie in %d..%d", officeID, slotMinutes, minutesPerDay, slotMinutesMin, slotMinutesMax)
	}
	if windows < 1 || windows > windowsMax {
		return seatGrid{}, invalid("office %s: windows %d must be in 1..%d", officeID, windows, windowsMax)
	}
	stepsMax := dayMinutesMax/slotMinutes + deadStepsMax
	return seatGrid{
		stepMinutes: slotMinutes,
		steps:       minutesPerDay / slotMinutes,
		stepsMax:    stepsMax,
		words:       (stepsMax + wordBits - 1) / wordBits,
		windows:     windows,
	}, nil
}

// span is an opening interval in minutes of the day, [from, to).
type span struct{ from, to int }

// compileHours turns the weekly hours into a bitmap per weekday of the
// grid labels within opening hours, and their counts.
func compileHours(officeID string, hours map[string][]string, g seatGrid) (open [7][]uint64, openSteps [7]int, err error) {
	for wd := range open {
		open[wd] = make([]uint64, g.words)
	}
	if len(hours) == 0 {
		return open, openSteps, invalid("office %s: hours are required, e.g. {\"mon\": [\"09:00-18:00\"]}", officeID)
	}
	for name, ivs := range hours {
		wd, ok := parseWeekday(name)
		if !ok {
			return open, openSteps, invalid("office %s: hours: unknown weekday %q (use mon, tue, wed, thu, fri, sat, sun)", officeID, name)
		}
		spans, err := parseDayHours(officeID, name, ivs, g.stepMinutes)
		if err != nil {
			return open, openSteps, err
		}
		for _, s := range spans {
			openSteps[wd] += markOpen(open[wd], s, g.stepMinutes)
		}
	}
	return open, openSteps, nil
}

// parseDayHours parses one weekday's intervals into sorted,
// non-overlapping spans on the grid.
func parseDayHours(officeID, weekday string, ivs []string, stepMinutes int) ([]span, error) {
	if len(ivs) > intervalsPerDayMax {
		return nil, invalid("office %s: hours %s: at most %d intervals a day", officeID, weekday, intervalsPerDayMax)
	}
	spans := make([]span, 0, len(ivs))
	for _, iv := range ivs {
		a, b, ok := strings.Cut(iv, "-")
		from, ok1 := parseClock(a, false)
		to, ok2 := parseClock(b, true)
		if !ok || !ok1 || !ok2 {
			return nil, invalid("office %s: hours %s: %q is not HH:MM-HH:MM", officeID, weekday, iv)
		}
		if from >= to {
			return nil, invalid("office %s: hours %s: %q ends before it starts", officeID, weekday, iv)
		}
		if from%stepMinutes != 0 || to%stepMinutes != 0 {
			return nil, invalid("office %s: hours %s: %q is not on the %d-minute grid (slot_minutes must divide both ends)", officeID, weekday, iv, stepMinutes)
		}
		spans = append(spans, span{from, to})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].from < spans[j].from })
	for i := 1; i < len(spans); i++ {
		if spans[i].from < spans[i-1].to {
			return nil, invalid("office %s: hours %s: intervals overlap", officeID, weekday)
		}
	}
	return spans, nil
}

// markOpen sets the bits of the grid labels of s in words and returns how
// many it set; s is on the grid and overlaps no span marked before.
func markOpen(words []uint64, s span, stepMinutes int) int {
	for st := s.from / stepMinutes; st < s.to/stepMinutes; st++ {
		words[st/wordBits] |= 1 << (st % wordBits)
	}
	return (s.to - s.from) / stepMinutes
}

// compileClosures parses the closed dates.
func compileClosures(officeID string, closures []string) (map[Date]bool, error) {
	if len(closures) > closuresMax {
		return nil, invalid("office %s: at most %d closures", officeID, closuresMax)
	}
	out := make(map[Date]bool, len(closures))
	for _, c := range closures {
		d, err := ParseDate(c)
		if err != nil {
			return nil, invalid("office %s: closure %q is not YYYY-MM-DD", officeID, c)
		}
		out[d] = true
	}
	return out, nil
}

// compileServices compiles the office's services, keyed by id.
func compileServices(officeID string, scs []ServiceConfig) (map[string]*service, error) {
	if len(scs) == 0 {
		return nil, invalid("office %s: at least one service is required", officeID)
	}
	if len(scs) > servicesMax {
		return nil, invalid("office %s: at most %d services", officeID, servicesMax)
	}
	out := make(map[string]*service, len(scs))
	for _, sc := range scs {
		if !idPattern.MatchString(sc.ID) {
			return nil, invalid("office %s: service id %q: use 1-63 lowercase letters, digits and dashes", officeID, sc.ID)
		}
		if _, dup := out[sc.ID]; dup {
			return nil, invalid("office %s: service %q is listed twice", officeID, sc.ID)
		}
		s, err := compileService(officeID, sc)
		if err != nil {
			return nil, err
		}
		out[sc.ID] = s
	}
	return out, nil
}

// compileService compiles one service whose id is checked.
func compileService(officeID string, sc ServiceConfig) (*service, error) {
	if sc.Slots < 1 || sc.Slots > serviceSlotsMax {
		return nil, invalid("office %s: service %s: slots %d must be in 1..%d grid steps", officeID, sc.ID, sc.Slots, serviceSlotsMax)
	}
	if len(sc.Name) > textBytesMax {
		return nil, invalid("office %s: service %s: name is longer than %d bytes", officeID, sc.ID, textBytesMax)
	}
	if err := checkServiceInfo(officeID, &sc); err != nil {
		return nil, err
	}
	s := &service{id: sc.ID, name: sc.Name, slots: sc.Slots, reschedulable: sc.Reschedulable, onlineCancel: sc.onlineCancel(),
		requiresApproval: sc.RequiresApproval}
	if len(sc.Weekdays) == 0 {
		for i := range s.weekdays {
			s.weekdays[i] = true
		}
	}
	for _, n := range sc.Weekdays {
		wd, ok := parseWeekday(n)
		if !ok {
			return nil, invalid("office %s: service %s: unknown weekday %q (use mon, tue, wed, thu, fri, sat, sun)", officeID, sc.ID, n)
		}
		s.weekdays[wd] = true
	}
	return s, nil
}

// checkServiceInfo checks what a service tells applicants besides its
// name: its documents and its names in other languages.
func checkServiceInfo(officeID string, sc *ServiceConfig) error {
	if len(sc.Documents) > serviceDocumentsMax {
		return invalid("office %s: service %s: at most %d documents", officeID, sc.ID, serviceDocumentsMax)
	}
	for i, d := range sc.Documents {
		if d == "" || len(d) > documentBytesMax {
			return invalid("office %s: service %s: documents[%d] must be 1..%d bytes", officeID, sc.ID, i, documentBytesMax)
		}
	}
	if len(sc.Names) > serviceNamesMax {
		return invalid("office %s: service %s: names in at most %d languages", officeID, sc.ID, serviceNamesMax)
	}
	for lang, name := range sc.Names {
		if !languagePattern.MatchString(lang) {
			return invalid("office %s: service %s: names key %q is not a lowercase primary language tag such as \"ru\" or \"en\"", officeID, sc.ID, lang)
		}
		if name == "" || len(name) > textBytesMax {
			return invalid("office %s: service %s: names[%s] must be 1..%d bytes", officeID, sc.ID, lang, textBytesMax)
		}
	}
	return nil
}

// compilePolicy checks p and returns it with time.Duration fields, and
// the minute of the day of the daily release.
func compilePolicy(officeID string, p PolicyConfig) (pol policy, releaseMin int, err error) {
	if p.HorizonDays < 1 || p.HorizonDays > horizonDaysMax {
		return policy{}, 0, invalid("office %s: policy.horizon_days %d must be in 1..%d", officeID, p.HorizonDays, horizonDaysMax)
	}
	releaseMin, ok := parseClock(p.ReleaseTime, false)
	if !ok {
		return policy{}, 0, invalid("office %s: policy.release_time %q is not HH:MM", officeID, p.ReleaseTime)
	}
	if err := checkPolicyBounds(officeID, p); err != nil {
		return policy{}, 0, err
	}
	return policy{
		horizonDays:           p.HorizonDays,
		holdTTL:               time.Duration(p.HoldTTL),
		cancelCutoff:          time.Duration(p.CancelCutoff),
		lateCancelFloor:       time.Duration(p.LateCancelFloor),
		rescheduleCutoff:      time.Duration(p.RescheduleCutoff),
		maxReschedules:        p.MaxReschedules,
		maxActivePerApplicant: p.MaxActivePerApplicant,
		penaltyCount:          p.CancelPenalty.Count,
		penaltyWindow:         time.Duration(p.CancelPenalty.Window),
		penaltyBlock:          time.Duration(p.CancelPenalty.Block),
		noShowGrace:           time.Duration(p.NoShowGrace),
		releaseLottery:        time.Duration(p.ReleaseLottery),
		reminderBefore:        time.Duration(p.ReminderBefore),
		minNotice:             time.Duration(p.MinNotice),

		cancelCutoffWorkingDays:     p.CancelCutoffWorkingDays,
		rescheduleCutoffWorkingDays: p.RescheduleCutoffWorkingDays,
	}, releaseMin, nil
}

// checkPolicyBounds checks the policy's durations and counts against
// their limits and each other.
func checkPolicyBounds(officeID string, p PolicyConfig) error {
	for name, d := range map[string]Duration{
		"hold_ttl": p.HoldTTL, "cancel_cutoff": p.CancelCutoff, "late_cancel_floor": p.LateCancelFloor,
		"reschedule_cutoff": p.RescheduleCutoff, "no_show_grace": p.NoShowGrace,
		"release_lottery": p.ReleaseLottery, "reminder_before": p.ReminderBefore, "min_notice": p.MinNotice,
		"cancel_penalty.window": p.CancelPenalty.Window, "cancel_penalty.block": p.CancelPenalty.Block,
	} {
		if d < 0 || time.Duration(d) > policyDurationMax {
			return invalid("office %s: policy.%s %s must be between 0s and %dh", officeID, name, time.Duration(d), int(policyDurationMax/time.Hour))
		}
	}
	if p.HoldTTL < Duration(holdTTLMin) {
		return invalid("office %s: policy.hold_ttl must be at least %ds", officeID, int(holdTTLMin/time.Second))
	}
	if p.LateCancelFloor > p.CancelCutoff {
		return invalid("office %s: policy.late_cancel_floor %s must not exceed cancel_cutoff %s", officeID, time.Duration(p.LateCancelFloor), time.Duration(p.CancelCutoff))
	}
	if p.ReleaseLottery > Duration(releaseLotteryMax) {
		return invalid("office %s: policy.release_lottery must be at most %dm", officeID, int(releaseLotteryMax/time.Minute))
	}
	if p.MaxReschedules < 0 || p.MaxReschedules > reschedulesMax {
		return invalid("office %s: policy.max_reschedules must be in 0..%d", officeID, reschedulesMax)
	}
	if p.MaxActivePerApplicant < 1 || p.MaxActivePerApplicant > activePerApplicantMax {
		return invalid("office %s: policy.max_active_per_applicant must be in 1..%d", officeID, activePerApplicantMax)
	}
	for name, n := range map[string]int{
		"cancel_cutoff_working_days": p.CancelCutoffWorkingDays, "reschedule_cutoff_working_days": p.RescheduleCutoffWorkingDays,
	} {
		if n < 0 || n > workingDaysMax {
			return invalid("office %s: policy.%s %d must be in 0..%d (0 turns it off)", officeID, name, n, workingDaysMax)
		}
	}
	if p.CancelPenalty.Count < 0 || p.CancelPenalty.Count > penaltyCountMax {
		return invalid("office %s: policy.cancel_penalty.count must be in 0..%d (0 turns the penalty off)", officeID, penaltyCountMax)
	}
	return nil
}

// workingDaysBefore reports whether at least n of the office's working
// days lie in [today, start), today and start being office-local dates:
// whether a request made today comes on or before the nth working day
// before start. A working day is a day the office is open by its weekly
// hours and not closed. It visits at most the days between the two,
// and stops at the nth working day; n is at most workingDaysMax.
func (l *layout) workingDaysBefore(today, start Date, n int) bool {
	for d := today; d < start && n > 0; d++ {
		if l.openSteps[d.Weekday()] > 0 && !l.closures[d] {
			n--
		}
	}
	return n <= 0
}

// sameSeats reports whether two layouts place seats identically, so bookings
// made under one stay valid under the other.
func (l *layout) sameSeats(o *layout) bool {
	if l.loc.String() != o.loc.String() || l.stepMinutes != o.stepMinutes || l.windows != o.windows {
		return false
	}
	for wd := range l.open {
		for i := range l.open[wd] {
			if l.open[wd][i] != o.open[wd][i] {
				return false
			}
		}
	}
	return true
}
