package peers

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// The PostgreSQL peer. A seat is a row; a claim is one statement that picks
// the lowest free window of the start with FOR UPDATE SKIP LOCKED (so
// concurrent claims of one start take different rows instead of queueing on
// one), sets its booking_id, and inserts the booking and its two events —
// one round trip, one transaction, committed with synchronous_commit=on.
// That is the fastest honest shape of this design on PostgreSQL: an explicit
// BEGIN … COMMIT of the same statements adds three round trips per booking.
//
// Rejected: a free-count table per (office, date, step) for availability.
// Every claim of a start would update the same row, which serialises the
// rush on that row lock; counting the partial index of free seats is
// cheaper.

const pgSchema = `
DROP TABLE IF EXISTS events, bookings, seats;
DROP SEQUENCE IF EXISTS booking_seq;
CREATE SEQUENCE booking_seq;
CREATE TABLE seats (
	office     text     NOT NULL,
	day        date     NOT NULL,
	step       smallint NOT NULL,
	win        smallint NOT NULL,
	booking_id text,
	PRIMARY KEY (office, day, step, win)
);
CREATE INDEX seats_free ON seats (office, day, step) WHERE booking_id IS NULL;
CREATE TABLE bookings (
	id         text PRIMARY KEY,
	number     text NOT NULL UNIQUE,
	office     text NOT NULL,
	service    text NOT NULL,
	applicant  text NOT NULL,
	day        date NOT NULL,
	step       smallint NOT NULL,
	win        smallint NOT NULL,
	status     text NOT NULL,
	history    jsonb NOT NULL
);
CREATE INDEX bookings_applicant ON bookings (applicant);
CREATE UNIQUE INDEX bookings_active ON bookings (applicant, office, service)
	WHERE status IN ('held', 'confirmed', 'cancel_requested', 'checked_in');
CREATE TABLE events (
	cursor     bigserial PRIMARY KEY,
	type       text NOT NULL,
	at         timestamptz NOT NULL,
	office     text NOT NULL,
	booking_id text NOT NULL,
	status     text NOT NULL
);`

// pgSeedSeats inserts every seat of one date: $1 office, $2 date, $3 steps,
// $4 windows.
const pgSeedSeats = `
INSERT INTO seats (office, day, step, win)
SELECT $1, $2::date, s, w FROM generate_series(0, $3::int - 1) s, generate_series(0, $4::int - 1) w`

// pgHold claims and books in one statement: $1 office, $2 date, $3 step,
// $4 booking id, $5 service, $6 applicant, $7 actor. No row: no free window.
const pgHold = `
WITH seat AS (
	SELECT office, day, step, win FROM seats
	WHERE office = $1 AND day = $2::date AND step = $3 AND booking_id IS NULL
	ORDER BY win LIMIT 1
	FOR UPDATE SKIP LOCKED
), claimed AS (
	UPDATE seats s SET booking_id = $4 FROM seat
	WHERE s.office = seat.office AND s.day = seat.day AND s.step = seat.step AND s.win = seat.win
	RETURNING s.win
), booked AS (
	INSERT INTO bookings (id, number, office, service, applicant, day, step, win, status, history)
	SELECT $4, upper($1) || '-' || to_char($2::date, 'YYYYMMDD') || '-' || lpad(seq.n, greatest(4, length(seq.n)), '0'),
		$1, $5, $6, $2::date, $3, win, 'confirmed',
		jsonb_build_array(
			jsonb_build_object('at', now(), 'status', 'held', 'actor', $7::text),
			jsonb_build_object('at', now(), 'status', 'confirmed', 'actor', $7::text))
	FROM claimed, (SELECT nextval('booking_seq')::text AS n) seq
	RETURNING id, number, win
), ev AS (
	INSERT INTO events (type, at, office, booking_id, status)
	SELECT t, now(), $1, booked.id, s FROM booked,
		(VALUES ('booking.held', 'held'), ('booking.confirmed', 'confirmed')) v(t, s)
)
SELECT number, win FROM booked`

// pgCancel cancels and frees in one statement: $1 id, $2 applicant, $3 actor.
const pgCancel = `
WITH b AS (
	UPDATE bookings SET status = 'cancelled',
		history = history || jsonb_build_array(jsonb_build_object('at', now(), 'status', 'cancelled', 'actor', $3::text))
	WHERE id = $1 AND applicant = $2 AND status IN ('held', 'confirmed')
	RETURNING id, office, day, step, win
), freed AS (
	UPDATE seats s SET booking_id = NULL FROM b
	WHERE s.office = b.office AND s.day = b.day AND s.step = b.step AND s.win = b.win AND s.booking_id = b.id
	RETURNING s.win
), ev AS (
	INSERT INTO events (type, at, office, booking_id, status)
	SELECT 'booking.cancelled', now(), office, id, 'cancelled' FROM b
)
SELECT count(*) FROM freed`

const pgAvailability = `
SELECT step, count(*) FROM seats WHERE office = $1 AND day = $2::date AND booking_id IS NULL GROUP BY step`

// pgActive reads the owners from the seats and the active bookings from
// the bookings table; Active cross-checks the two.
const pgActive = `
SELECT b.id, b.number, b.office, b.service, b.applicant, b.step, b.win, b.status, s.booking_id IS NOT DISTINCT FROM b.id
FROM bookings b LEFT JOIN seats s ON s.office = b.office AND s.day = b.day AND s.step = b.step AND s.win = b.win
WHERE b.office = $1 AND b.day = $2::date AND b.status IN ('held', 'confirmed', 'cancel_requested', 'checked_in')`

const pgTakenSeats = `SELECT count(*) FROM seats WHERE office = $1 AND day = $2::date AND booking_id IS NOT NULL`

// pgBackend is the PostgreSQL peer. Safe for concurrent use.
type pgBackend struct {
	lay Layout
	db  *sql.DB
}

// OpenPostgres connects to dsn, recreates the schema (dropping any earlier
// run's tables) and seeds every seat of the layout. connsMax bounds the
// connection pool (0: database/sql's default, unbounded).
func OpenPostgres(ctx context.Context, dsn string, lay Layout, connsMax int) (Backend, error) {
	if err := lay.validate(); err != nil {
		return nil, err
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("cannot open PostgreSQL: %w", err)
	}
	db.SetMaxOpenConns(connsMax)
	db.SetMaxIdleConns(connsMax)
	b := &pgBackend{lay: lay, db: db}
	if err := b.setup(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return b, nil
}

func (b *pgBackend) setup(ctx context.Context) error {
	var sc string
	if err := b.db.QueryRowContext(ctx, `SHOW synchronous_commit`).Scan(&sc); err != nil {
		return fmt.Errorf("cannot reach PostgreSQL: %w", err)
	}
	if sc != "on" {
		return fmt.Errorf("PostgreSQL runs with synchronous_commit=%s; the comparison needs on", sc)
	}
	if _, err := b.db.ExecContext(ctx, pgSchema); err != nil {
		return fmt.Errorf("cannot create the schema: %w", err)
	}
	for _, d := range b.lay.Dates {
		if _, err := b.db.ExecContext(ctx, pgSeedSeats, b.lay.Office, d, b.lay.Steps(), b.lay.Windows); err != nil {
			return fmt.Errorf("cannot seed the seats of %s: %w", d, err)
		}
	}
	if _, err := b.db.ExecContext(ctx, `VACUUM ANALYZE seats`); err != nil {
		return fmt.Errorf("cannot analyze the seats: %w", err)
	}
	return nil
}

func (b *pgBackend) Name() string { return "postgres" }

func (b *pgBackend) Availability(ctx context.Context, office, date, service string, out []int) ([]int, error) {
	if err := b.lay.checkDay(office, service, date); err != nil {
		return nil, err
	}
	rows, err := b.db.QueryContext(ctx, pgAvailability, office, date)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	base := len(out)
	out = b.lay.zeroFree(out)
	free := out[base:]
	for rows.Next() {
		var step, n int
		if err := rows.Scan(&step, &n); err != nil {
			return nil, err
		}
		free[step] = n
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func (b *pgBackend) Hold(ctx context.Context, req HoldRequest) (Booking, error) {
	date, step, err := b.lay.seatOf(req)
	if err != nil {
		return Booking{}, err
	}
	id := newBookingID()
	var number string
	var win int
	err = b.db.QueryRowContext(ctx, pgHold, req.Office, date, step, id, req.Service, req.Applicant, "bench").Scan(&number, &win)
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Booking{}, ErrSlotTaken
	case errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "bookings_active":
		return Booking{}, ErrDuplicate
	case err != nil:
		return Booking{}, err
	}
	start := b.lay.Start(date, step)
	return Booking{
		ID: id, Number: number, Office: req.Office, Service: req.Service, Applicant: req.Applicant,
		Window: win + 1, Start: start, End: start.Add(time.Duration(b.lay.StepMinutes) * time.Minute), Status: statusConfirmed,
	}, nil
}

func (b *pgBackend) Cancel(ctx context.Context, id, applicant string) error {
	var freed int
	if err := b.db.QueryRowContext(ctx, pgCancel, id, applicant, "bench").Scan(&freed); err != nil {
		return err
	}
	if freed == 0 {
		return ErrNotFound // unknown, another applicant's, or no longer active
	}
	return nil
}

func (b *pgBackend) Active(ctx context.Context, office, date string) ([]Booking, error) {
	rows, err := b.db.QueryContext(ctx, pgActive, office, date)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Booking
	for rows.Next() {
		var bk Booking
		var step, win int
		var owns bool
		if err := rows.Scan(&bk.ID, &bk.Number, &bk.Office, &bk.Service, &bk.Applicant, &step, &win, &bk.Status, &owns); err != nil {
			return nil, err
		}
		if !owns {
			return nil, fmt.Errorf("booking %s is %s but its seat row is not its own", bk.ID, bk.Status)
		}
		bk.Window, bk.Start = win+1, b.lay.Start(date, step)
		bk.End = bk.Start.Add(time.Duration(b.lay.StepMinutes) * time.Minute)
		out = append(out, bk)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var taken int
	if err := b.db.QueryRowContext(ctx, pgTakenSeats, office, date).Scan(&taken); err != nil {
		return nil, err
	}
	if taken != len(out) {
		return nil, fmt.Errorf("%d seats are taken but %d bookings are active", taken, len(out))
	}
	return out, nil
}

func (b *pgBackend) Close() error { return b.db.Close() }

// newBookingID returns 128 random bits in the URL-safe form slotd uses.
func newBookingID() string {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		panic("BUG: peers: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(id[:])
}
