package main

// slotd dump and slotd verify: read a stopped data directory or a backup
// without changing it (wal.OpenReadOnly): export its offices and bookings
// as JSON lines in the API's shapes, print one office's day list, or run
// the store's own checks.

import (
	"bufio"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"slotd/allocator"
	"slotd/httpapi"
	"slotd/wal"
)

// readStore is a data directory opened read-only and recovered into an
// engine that is never ticked, so nothing is written: holds past their
// TTL stay held, as the store holds them.
type readStore struct {
	db       *wal.DB
	engine   *allocator.Engine
	bookings []*allocator.BookingRecord // every booking, in creation order
	stats    wal.RecoveryStats
}

// bookingCollector keeps every booking record Recover restores, for the
// export's order. Safe for concurrent use, as Recover requires.
type bookingCollector struct {
	*allocator.Engine
	mu   sync.Mutex
	recs []*allocator.BookingRecord
}

func (c *bookingCollector) RestoreBooking(rec *allocator.BookingRecord) error {
	if err := c.Engine.RestoreBooking(rec); err != nil {
		return err
	}
	c.mu.Lock()
	c.recs = append(c.recs, rec)
	c.mu.Unlock()
	return nil
}

// openStore opens dir read-only and recovers it. Its errors are one line
// that names the directory and the problem.
func openStore(dir string) (st *readStore, err error) {
	// Whatever a damaged directory makes the store's reader do, the
	// answer is one line, never a trace.
	defer func() {
		if r := recover(); r != nil {
			if st != nil {
				_ = st.db.Close()
			}
			st, err = nil, fmt.Errorf("%s: cannot read the store: %v", dir, r)
		}
	}()
	db, err := wal.OpenReadOnly(dir, wal.Options{})
	switch {
	case errors.Is(err, wal.ErrInUse):
		return nil, fmt.Errorf("%s is in use by a running slotd (it holds the store's lock): stop it first, or read a backup of it (slotd backup)", dir)
	case err != nil:
		return nil, storeError(dir, err)
	}
	st = &readStore{db: db}
	if st.engine, err = allocator.New(allocator.Config{Journal: db}); err != nil {
		_ = db.Close()
		return nil, err
	}
	c := &bookingCollector{Engine: st.engine}
	if st.stats, err = wal.Recover(db, c, time.Now()); err != nil {
		_ = db.Close()
		return nil, storeError(dir, err)
	}
	slices.SortFunc(c.recs, func(a, b *allocator.BookingRecord) int {
		if c := cmp.Compare(a.History.First().AtUnixNano, b.History.First().AtUnixNano); c != 0 {
			return c
		}
		return slices.Compare(a.ID[:], b.ID[:])
	})
	st.bookings = c.recs
	return st, nil
}

// storeError names dir once: wal's messages name the path already when
// they are about the directory itself.
func storeError(dir string, err error) error {
	if strings.Contains(err.Error(), dir) {
		return err
	}
	return fmt.Errorf("%s: %w", dir, err)
}

// runDump is `slotd dump -data DIR [-office ID [-date YYYY-MM-DD]] [-format json|text]`.
func runDump(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("slotd dump", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", envOr(getenv, "SLOTD_DATA", "./data"), "data `directory` of a stopped slotd, or a backup (default: SLOTD_DATA, else ./data)")
	office := fs.String("office", "", "only this office `id` and its bookings")
	dateText := fs.String("date", "", "with -office: only that office's bookings on this `date` (YYYY-MM-DD), in the order of its day list")
	format := fs.String("format", "json", "json: one object a line, {\"office\":…} then {\"booking\":…} in the API's shapes; text: a table of the bookings")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: slotd dump [-data DIR] [-office ID [-date YYYY-MM-DD]] [-format json|text]\n"+
			"Writes a stopped store's or a backup's offices and bookings to standard output, without changing it.")
		fs.PrintDefaults()
	}
	if code, ok := parseSub(fs, args, stderr); !ok {
		return code
	}
	var date allocator.Date
	switch {
	case *format != "json" && *format != "text":
		fmt.Fprintf(stderr, "slotd dump: -format %q: use json or text\n", *format)
		return 2
	case *dateText != "" && *office == "":
		fmt.Fprintln(stderr, "slotd dump: -date needs -office: a day list is one office's")
		return 2
	case *dateText != "":
		d, err := allocator.ParseDate(*dateText)
		if err != nil {
			fmt.Fprintf(stderr, "slotd dump: -date %q is not a date YYYY-MM-DD\n", *dateText)
			return 2
		}
		date = d
	}
	st, err := openStore(*data)
	if err != nil {
		fmt.Fprintln(stderr, "slotd dump:", err)
		return 1
	}
	defer st.db.Close()
	offices := st.engine.OfficeIDs()
	slices.Sort(offices)
	if *office != "" {
		if _, err := st.engine.Office(*office); err != nil {
			fmt.Fprintf(stderr, "slotd dump: %s holds no office %q (it holds %s)\n", *data, *office, officeList(offices))
			return 1
		}
		offices = []string{*office}
	}
	var bookings []allocator.Booking
	if *dateText != "" {
		bookings = dayList(st.engine, *office, date)
	} else {
		bookings = make([]allocator.Booking, 0, len(st.bookings))
		for _, rec := range st.bookings {
			if *office != "" && rec.Office != *office {
				continue
			}
			v, _ := st.engine.View(rec)
			bookings = append(bookings, v)
		}
	}
	w := bufio.NewWriterSize(stdout, 64<<10)
	if *format == "text" {
		err = writeDayTable(w, st.engine, *office, *dateText, bookings)
	} else {
		err = writeJSONLines(w, st.engine, offices, bookings)
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		fmt.Fprintln(stderr, "slotd dump: cannot write the output:", err)
		return 1
	}
	return 0
}

// dayListPage is how many bookings one Agenda call returns.
const dayListPage = 1024

// dayList returns the bookings of office on date in the order of its day
// list (GET /v1/offices/{office}/days/{date}/bookings): by window, then
// start, archive included.
func dayList(e *allocator.Engine, office string, date allocator.Date) []allocator.Booking {
	var out []allocator.Booking
	var after allocator.AgendaKey
	for {
		page, more, err := e.Agenda(office, date, allocator.AgendaFilter{}, after, dayListPage)
		if err != nil {
			panic(fmt.Sprintf("BUG: agenda of office %s, which the engine holds: %v", office, err))
		}
		out = append(out, page...)
		if !more {
			return out
		}
		after = allocator.AgendaKeyOf(&page[len(page)-1].BookingRecord)
	}
}

func officeList(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}

// writeJSONLines writes {"office":…} for each office, then {"booking":…}
// for each booking, one a line, in the shapes of GET /v1/offices/{id}
// and of the booking routes.
func writeJSONLines(w *bufio.Writer, e *allocator.Engine, offices []string, bookings []allocator.Booking) error {
	var line []byte
	for _, id := range offices {
		rec, err := e.Office(id)
		if err != nil {
			panic(fmt.Sprintf("BUG: office %s, which the engine listed: %v", id, err))
		}
		line = append(httpapi.AppendOfficeJSON(append(line[:0], `{"office":`...), &rec), "}\n"...)
		if _, err := w.Write(line); err != nil {
			return err
		}
	}
	for i := range bookings {
		line = append(httpapi.AppendBookingJSON(append(line[:0], `{"booking":`...), &bookings[i]), "}\n"...)
		if _, err := w.Write(line); err != nil {
			return err
		}
	}
	return nil
}

// writeDayTable prints bookings as a table for people: a heading naming
// the office (and the date), then one booking a line.
func writeDayTable(w io.Writer, e *allocator.Engine, office, date string, bookings []allocator.Booking) error {
	if office != "" {
		rec, _ := e.Office(office)
		heading := rec.Config.Name + " (" + office + "), " + rec.Config.Address
		if date != "" {
			heading += ": " + date
		}
		if _, err := fmt.Fprintf(w, "%s\n%d bookings, times in %s\n\n", heading, len(bookings), rec.Config.Timezone); err != nil {
			return err
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "date\tstart\tend\twindow\tnumber\tservice\tstatus\tapplicant")
	for i := range bookings {
		b := &bookings[i]
		namespace, applicant := httpapi.SplitApplicant(b.Applicant)
		if namespace != "" {
			applicant = namespace + "/" + applicant
		}
		day, start, end := "-", "-", "-"
		if !b.Start.IsZero() {
			day, start, end = b.Start.Format("2006-01-02"), b.Start.Format("15:04"), b.End.Format("15:04")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", day, start, end, int(b.Window)+1, b.Number, b.Service, b.Status, applicant)
	}
	return tw.Flush()
}

// runVerify is `slotd verify -data DIR`: the checks a start makes (the
// sync mark, the format, every record), and the engine's own
// (allocator.Engine.Verify: no seat owned twice, counters equal to the
// seats), on a stopped store or a backup, without changing it.
func runVerify(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("slotd verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", envOr(getenv, "SLOTD_DATA", "./data"), "data `directory` of a stopped slotd, or a backup (default: SLOTD_DATA, else ./data)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: slotd verify [-data DIR]\nChecks a stopped store or a backup as a start would, and the engine's invariants, without changing it.")
		fs.PrintDefaults()
	}
	if code, ok := parseSub(fs, args, stderr); !ok {
		return code
	}
	st, err := openStore(*data)
	if err != nil {
		fmt.Fprintln(stderr, "slotd verify:", err)
		return 1
	}
	defer st.db.Close()
	if err := st.engine.Verify(); err != nil {
		fmt.Fprintf(stderr, "slotd verify: %s: the engine's check fails: %v\n", *data, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok: %d offices, %d bookings (%d active), %d watches, events through cursor %d\n",
		*data, st.stats.Offices, st.stats.Bookings, st.stats.ActiveBookings, st.stats.Watches, st.stats.LastCursor)
	return 0
}
