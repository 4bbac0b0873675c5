package peers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Redis peer. Each (office, date) has a bitmap of seats (bit
// step*windows+window, 1 = free, as slotd's) and a hash of free counts per
// step; a claim is one Lua script that finds the lowest free window of the
// start with BITPOS, clears it, and writes the booking, the duplicate guard,
// the applicant index and two events to a stream, atomically. The server
// runs with appendonly yes and appendfsync always, so it answers only after
// the script's effects are fsynced to the append-only file (Redis shares
// that fsync among the commands of one event-loop turn, its group commit).
//
// Keys ({tag} = {office:date}):
//
//	seats:{tag}      bitmap, 1 = free
//	free:{tag}       hash step → free windows
//	seq:{tag}        counter, tail of the booking number
//	booking:<id>     hash: number office service applicant date step window status history
//	active:<applicant>:<office>:<service>   booking id while active (duplicate rule)
//	applicant:<applicant>                   set of booking ids
//	events           stream of booking.* events
//
// The cancel script derives the seat keys from the booking it reads, which
// a standalone server allows (a cluster would need them declared).

var redisHold = redis.NewScript(`
if redis.call('EXISTS', KEYS[5]) == 1 then return -2 end
local step = tonumber(ARGV[1])
local first = step * tonumber(ARGV[2])
local pos = redis.call('BITPOS', KEYS[1], 1, first, first + tonumber(ARGV[2]) - 1, 'BIT')
if pos < 0 then return -1 end
redis.call('SETBIT', KEYS[1], pos, 0)
redis.call('HINCRBY', KEYS[2], ARGV[1], -1)
local win = pos - first
local number = ARGV[10] .. string.format('%04d', redis.call('INCR', KEYS[3]))
local history = cjson.encode({
	{at = ARGV[8], status = 'held', actor = ARGV[9]},
	{at = ARGV[8], status = 'confirmed', actor = ARGV[9]}})
redis.call('HSET', KEYS[4], 'number', number, 'office', ARGV[4], 'service', ARGV[5],
	'applicant', ARGV[6], 'date', ARGV[7], 'step', step, 'window', win,
	'status', 'confirmed', 'history', history)
redis.call('SET', KEYS[5], ARGV[3])
redis.call('SADD', KEYS[6], ARGV[3])
redis.call('XADD', KEYS[7], '*', 'type', 'booking.held', 'at', ARGV[8], 'office', ARGV[4], 'booking', ARGV[3], 'status', 'held')
redis.call('XADD', KEYS[7], '*', 'type', 'booking.confirmed', 'at', ARGV[8], 'office', ARGV[4], 'booking', ARGV[3], 'status', 'confirmed')
return {win, number}
`)

var redisCancel = redis.NewScript(`
local b = redis.call('HMGET', KEYS[1], 'applicant', 'status', 'office', 'service', 'date', 'step', 'window', 'history')
if not b[1] or b[1] ~= ARGV[1] then return 0 end
if b[2] ~= 'held' and b[2] ~= 'confirmed' then return -1 end
local history = cjson.decode(b[8])
table.insert(history, {at = ARGV[3], status = 'cancelled', actor = ARGV[4]})
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'history', cjson.encode(history))
redis.call('DEL', 'active:' .. b[1] .. ':' .. b[3] .. ':' .. b[4])
local tag = '{' .. b[3] .. ':' .. b[5] .. '}'
redis.call('SETBIT', 'seats:' .. tag, tonumber(b[6]) * tonumber(ARGV[2]) + tonumber(b[7]), 1)
redis.call('HINCRBY', 'free:' .. tag, b[6], 1)
redis.call('XADD', KEYS[2], '*', 'type', 'booking.cancelled', 'at', ARGV[3], 'office', b[3], 'booking', ARGV[5], 'status', 'cancelled')
return 1
`)

// redisBackend is the Redis peer. Safe for concurrent use.
type redisBackend struct {
	lay Layout
	rdb *redis.Client
}

// OpenRedis connects to url (redis://host:port/db), empties that database,
// checks that the server fsyncs every write, and seeds the layout's seats.
// connsMax is the client's pool size (0: go-redis's default).
func OpenRedis(ctx context.Context, url string, lay Layout, connsMax int) (Backend, error) {
	if err := lay.validate(); err != nil {
		return nil, err
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("cannot parse the Redis URL: %w", err)
	}
	opts.PoolSize = connsMax
	b := &redisBackend{lay: lay, rdb: redis.NewClient(opts)}
	if err := b.setup(ctx); err != nil {
		_ = b.rdb.Close()
		return nil, err
	}
	return b, nil
}

func (b *redisBackend) setup(ctx context.Context) error {
	for param, want := range map[string]string{"appendonly": "yes", "appendfsync": "always"} {
		got, err := b.rdb.ConfigGet(ctx, param).Result()
		if err != nil {
			return fmt.Errorf("cannot reach Redis: %w", err)
		}
		if got[param] != want {
			return fmt.Errorf("redis runs with %s %q; the comparison needs %q", param, got[param], want)
		}
	}
	if err := b.rdb.FlushDB(ctx).Err(); err != nil {
		return err
	}
	bitmap := strings.Repeat("\xff", (b.lay.Seats()+7)/8)
	free := make([]any, 0, 2*b.lay.Steps())
	for s := range b.lay.Steps() {
		free = append(free, s, b.lay.Windows)
	}
	for _, d := range b.lay.Dates {
		tag := b.tag(b.lay.Office, d)
		if err := b.rdb.Set(ctx, "seats:"+tag, bitmap, 0).Err(); err != nil {
			return err
		}
		if err := b.rdb.HSet(ctx, "free:"+tag, free...).Err(); err != nil {
			return err
		}
	}
	return errors.Join(redisHold.Load(ctx, b.rdb).Err(), redisCancel.Load(ctx, b.rdb).Err())
}

func (b *redisBackend) tag(office, date string) string { return "{" + office + ":" + date + "}" }

func (b *redisBackend) Name() string { return "redis" }

func (b *redisBackend) Availability(ctx context.Context, office, date, service string, out []int) ([]int, error) {
	if err := b.lay.checkDay(office, service, date); err != nil {
		return nil, err
	}
	m, err := b.rdb.HGetAll(ctx, "free:"+b.tag(office, date)).Result()
	if err != nil {
		return nil, err
	}
	base := len(out)
	out = b.lay.zeroFree(out)
	free := out[base:]
	for k, v := range m {
		s, err1 := strconv.Atoi(k)
		n, err2 := strconv.Atoi(v)
		if err1 != nil || err2 != nil || s < 0 || s >= len(free) {
			return nil, fmt.Errorf("free:%s holds %q=%q", b.tag(office, date), k, v)
		}
		free[s] = n
	}
	return out, nil
}

func (b *redisBackend) Hold(ctx context.Context, req HoldRequest) (Booking, error) {
	date, step, err := b.lay.seatOf(req)
	if err != nil {
		return Booking{}, err
	}
	id := newBookingID()
	tag := b.tag(req.Office, date)
	keys := []string{"seats:" + tag, "free:" + tag, "seq:" + tag, "booking:" + id,
		"active:" + req.Applicant + ":" + req.Office + ":" + req.Service, "applicant:" + req.Applicant, "events"}
	prefix := strings.ToUpper(req.Office) + "-" + strings.ReplaceAll(date, "-", "") + "-"
	res, err := redisHold.Run(ctx, b.rdb, keys, step, b.lay.Windows, id, req.Office, req.Service, req.Applicant,
		date, time.Now().UnixNano(), "bench", prefix).Result()
	if err != nil {
		return Booking{}, err
	}
	switch r := res.(type) {
	case int64:
		if r == -2 {
			return Booking{}, ErrDuplicate
		}
		return Booking{}, ErrSlotTaken
	case []any:
		win, ok1 := r[0].(int64)
		number, ok2 := r[1].(string)
		if len(r) != 2 || !ok1 || !ok2 {
			return Booking{}, fmt.Errorf("hold script answered %v", r)
		}
		start := b.lay.Start(date, step)
		return Booking{
			ID: id, Number: number, Office: req.Office, Service: req.Service, Applicant: req.Applicant,
			Window: int(win) + 1, Start: start, End: start.Add(time.Duration(b.lay.StepMinutes) * time.Minute), Status: statusConfirmed,
		}, nil
	}
	return Booking{}, fmt.Errorf("hold script answered %T %v", res, res)
}

func (b *redisBackend) Cancel(ctx context.Context, id, applicant string) error {
	n, err := redisCancel.Run(ctx, b.rdb, []string{"booking:" + id, "events"},
		applicant, b.lay.Windows, time.Now().UnixNano(), "bench", id).Int()
	switch {
	case err != nil:
		return err
	case n == 0:
		return ErrNotFound
	case n < 0:
		return ErrTransition
	}
	return nil
}

// Active scans the booking hashes (for verification only: SCAN walks the
// whole keyspace) and cross-checks their count with the bitmap.
func (b *redisBackend) Active(ctx context.Context, office, date string) ([]Booking, error) {
	var out []Booking
	iter := b.rdb.Scan(ctx, 0, "booking:*", 1000).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		v, err := b.rdb.HMGet(ctx, key, "number", "office", "service", "applicant", "date", "step", "window", "status").Result()
		if err != nil {
			return nil, err
		}
		str := func(i int) string { s, _ := v[i].(string); return s }
		if str(1) != office || str(4) != date || (str(7) != statusConfirmed && str(7) != "held") {
			continue
		}
		step, err1 := strconv.Atoi(str(5))
		win, err2 := strconv.Atoi(str(6))
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s has step %q window %q", key, str(5), str(6))
		}
		start := b.lay.Start(date, step)
		out = append(out, Booking{
			ID: strings.TrimPrefix(key, "booking:"), Number: str(0), Office: office, Service: str(2), Applicant: str(3),
			Window: win + 1, Start: start, End: start.Add(time.Duration(b.lay.StepMinutes) * time.Minute), Status: str(7),
		})
	}
	if err := iter.Err(); err != nil {
		return nil, err
	}
	free, err := b.rdb.BitCount(ctx, "seats:"+b.tag(office, date), nil).Result()
	if err != nil {
		return nil, err
	}
	padding := int64((b.lay.Seats()+7)/8*8 - b.lay.Seats()) // trailing bits past the last seat stay 1
	if taken := int64(b.lay.Seats()) - (free - padding); taken != int64(len(out)) {
		return nil, fmt.Errorf("%d seats are taken in the bitmap but %d bookings are active", taken, len(out))
	}
	return out, nil
}

func (b *redisBackend) Close() error { return b.rdb.Close() }
