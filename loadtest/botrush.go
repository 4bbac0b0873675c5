package loadtest

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"slotd/client"
)

// The bot rush (DESIGN "Fairness in the rush"): the rush date is released,
// and inside the office's release-lottery window every human sends one
// hold request while every bot sends BotFactor of them, all for the first
// free start of the date (earliest_after). Humans and bots go through the
// same portal key, as they would in life. An applicant who gets a hold
// confirms it. A human's request refused with 429 or 503 is retried as
// Retry-After says (up to RetriesMax), as a portal would; bots never
// retry, they send more.
//
// The verdict compares the bots' share of the seats won with their share
// of the applicants. With S seats won and a bot share p, a fair draw gives
// the bots a share of about p ± √(p(1−p)/S); the run fails when the bots'
// share exceeds p by more than three of those standard deviations (the
// chance of a false alarm is about 0.1%).

// Fairness is the botrush verdict.
type Fairness struct {
	Humans, Bots               int
	HumanRequests, BotRequests int
	HumanSeats, BotSeats       int
	BotApplicantShare          float64
	BotSeatShare               float64
	BotSeatShareMax            float64 // BotApplicantShare + 3σ
	LotteryWindow              time.Duration
	LateHumanShots             int // sent after the window closed
	LateBotShots               int
	OK                         bool
	Note                       string
}

func (f *Fairness) String() string {
	verdict := "OK"
	if !f.OK {
		verdict = "FAILED"
	}
	s := fmt.Sprintf("fairness: %s — bots are %.1f%% of applicants (%d of %d) and sent %d requests to the humans' %d; "+
		"they won %.1f%% of the seats (%d of %d), limit %.1f%%; lottery window %s",
		verdict, 100*f.BotApplicantShare, f.Bots, f.Bots+f.Humans, f.BotRequests, f.HumanRequests,
		100*f.BotSeatShare, f.BotSeats, f.BotSeats+f.HumanSeats, 100*f.BotSeatShareMax, f.LotteryWindow)
	if f.Note != "" {
		s += "; " + f.Note
	}
	return s
}

// judgeFairness computes the verdict from the counts.
func judgeFairness(humans, bots, humanSeats, botSeats int) Fairness {
	f := Fairness{Humans: humans, Bots: bots, HumanSeats: humanSeats, BotSeats: botSeats}
	if humans+bots > 0 {
		f.BotApplicantShare = float64(bots) / float64(humans+bots)
	}
	seats := humanSeats + botSeats
	if seats == 0 {
		f.Note = "no seat was won: nothing to judge"
		return f
	}
	p := f.BotApplicantShare
	f.BotSeatShare = float64(botSeats) / float64(seats)
	f.BotSeatShareMax = p + 3*math.Sqrt(p*(1-p)/float64(seats))
	f.OK = f.BotSeatShare <= f.BotSeatShareMax
	if seats >= humans+bots {
		f.Note = "every applicant could get a seat: add applicants for a real contest"
	}
	return f
}

// botrush is the state of a botrush run. Handler goroutine only, except
// order and shot (read by the arrival Targeter).
type botrush struct {
	e         *engine
	earliest  time.Time // earliest_after: the rush date's midnight, office-local
	order     []int     // applicant index per shot, shuffled
	shot      atomic.Int64
	shotsLeft []int
	lastFail  []Class
	won       []bool
	windowEnd time.Time // estimated end of the lottery window
	lateHuman int       // shots sent after windowEnd
	lateBot   int
	botReqs   int
	humanReqs int
	fairness  Fairness
}

func runBotRush(ctx context.Context, e *engine, admin *apiClient) (string, *Fairness, error) {
	cfg := e.cfg
	if admin == nil {
		return "", nil, fmt.Errorf("botrush needs an admin key to release the date at the start of the lottery")
	}
	plan, err := planRelease(ctx, cfg, e.api, admin)
	if err != nil {
		return "", nil, err
	}
	e.days[CheckDay{Office: cfg.Office, Service: cfg.Service, Date: plan.date}] = true
	midnight, _ := time.ParseInLocation(time.DateOnly, plan.date, plan.loc)

	bots := int(math.Round(float64(cfg.Applicants) * cfg.BotRatio))
	humans := cfg.Applicants - bots
	b := &botrush{e: e, earliest: midnight}
	for i := range cfg.Applicants {
		a := e.newApplicant()
		a.bot = i < bots
		shots := 1
		if a.bot {
			shots = cfg.BotFactor
		}
		for range shots {
			b.order = append(b.order, a.idx)
		}
		b.shotsLeft = append(b.shotsLeft, shots)
	}
	b.lastFail = make([]Class, cfg.Applicants)
	b.won = make([]bool, cfg.Applicants)
	e.rng.Shuffle(len(b.order), func(i, j int) { b.order[i], b.order[j] = b.order[j], b.order[i] })
	e.arrive = b.arrive
	e.react = b.react

	// Every shot lands inside the lottery window, with a margin for the
	// network; without a lottery the shots spread over Spread.
	spread := cfg.Spread
	if plan.lottery > 0 {
		spread = min(spread, plan.lottery*8/10)
	}
	shots := len(b.order)
	pacer, err := NewProfilePacer(flatProfile(float64(shots)/spread.Seconds(), spread), uint64(shots))
	if err != nil {
		return "", nil, err
	}
	// The window opens when the server handles the release; the end is
	// estimated from the moment its answer arrived (a little late).
	if err := admin.release(ctx, cfg.Office, plan.date); err != nil {
		return "", nil, fmt.Errorf("cannot release %s through %s: %w", cfg.Office, plan.date, err)
	}
	note := fmt.Sprintf("released %s through %s (%s); %d shots over %s", cfg.Office, plan.date, plan.detected, shots, spread)
	e.logf("%s", note)
	releasedAt := time.Now()
	b.windowEnd = releasedAt.Add(plan.lottery)
	e.stats.chart.markRelease(releasedAt.Sub(e.stats.began), plan.lottery)
	e.attack(ctx, vegeta.Pacer(pacer), 0) // count-bounded: every shot is sent
	for _, a := range e.apps {
		e.finish(a, OutcomeUnfinished) // no-op for those who finished
	}

	humanSeats, botSeats := 0, 0
	for i, w := range b.won {
		switch {
		case !w:
		case e.apps[i].bot:
			botSeats++
		default:
			humanSeats++
		}
	}
	b.fairness = judgeFairness(humans, bots, humanSeats, botSeats)
	b.fairness.HumanRequests, b.fairness.BotRequests = b.humanReqs, b.botReqs
	b.fairness.LotteryWindow = plan.lottery
	b.fairness.LateHumanShots, b.fairness.LateBotShots = b.lateHuman, b.lateBot
	if plan.lottery == 0 {
		b.fairness.Note += "office has no release lottery: first come, first served"
	} else if b.lateHuman > 0 {
		b.fairness.Note += fmt.Sprintf("%d human and %d bot shots left after the window closed: "+
			"the load generator fell behind, and late humans lose to bots' earlier shots", b.lateHuman, b.lateBot)
	}
	return note, &b.fairness, nil
}

// arrive sends the next shot. Each shot has its own Idempotency-Key: a bot
// sends distinct requests, not retries.
func (b *botrush) arrive() request {
	e := b.e
	n := int(b.shot.Add(1) - 1)
	if n >= len(b.order) {
		panic("BUG: botrush: more arrivals than shots")
	}
	a := e.applicant(b.order[n])
	r := request{app: a.idx, step: stepHold, method: "POST", path: "/v1/bookings",
		body:    e.holdBody(a, e.cfg.Office, time.Time{}, b.earliest),
		idemKey: fmt.Sprintf("slotload-%s-%s-shot-%d", e.runID, a.id, n)}
	if !a.bot {
		a.last = r // a human's only shot; the handler reads it after the answer
	}
	return r
}

func (b *botrush) react(a *applicant, _ request, r *vegeta.Result, c Class, p client.Problem) {
	e := b.e
	if s, _, _ := parseTag(r.URL); s == stepConfirm {
		switch c {
		case ClassOK:
			e.recordAnswer(a, r, client.Confirmed)
			e.finish(a, OutcomeBooked)
		case ClassError, ClassRateLimited, ClassShed:
			if c == ClassError {
				e.unansweredChange(a, client.Confirmed)
			}
			if !e.retry(a, e.backoff(r)) {
				e.finish(a, OutcomeHeld)
			}
		default:
			e.finish(a, OutcomeHeld)
		}
		return
	}
	late := !b.windowEnd.IsZero() && r.Timestamp.After(b.windowEnd)
	if a.bot {
		b.botReqs++
		if late {
			b.lateBot++
		}
	} else {
		b.humanReqs++
		if late {
			b.lateHuman++
		}
	}
	if !a.bot && (c == ClassRateLimited || c == ClassShed) && e.retry(a, e.backoff(r)) {
		// The portal retries a person's request as Retry-After says; a
		// bot needs no retries, it sends more.
		return
	}
	b.shotsLeft[a.idx]--
	switch {
	case c == ClassOK:
		bk := e.recordAnswer(a, r, client.Held)
		if !b.won[a.idx] {
			b.won[a.idx] = true
			if bk.Status == client.Confirmed {
				e.finish(a, OutcomeBooked)
			} else {
				e.send(a, e.confirmRequest(a, bk.Id), 0)
			}
		}
	case b.lastFail[a.idx] == "" || c != ClassDuplicate:
		b.lastFail[a.idx] = c // a duplicate says less than why the first shot lost
	}
	if b.shotsLeft[a.idx] == 0 && !b.won[a.idx] {
		e.finish(a, outcomeOf(b.lastFail[a.idx]))
	}
}
