package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"slotd/loadtest"
)

const profileUsage = `usage: slotload profile -from prometheus|access-log [flags] file...

Turns a real day into a peak-day rate profile (the CSV that -profile
reads: HH:MM,requests per second, one row a minute):

  -from prometheus: the JSON answer of a Prometheus range query, e.g.
      curl -G http://prometheus:9090/api/v1/query_range \
        --data-urlencode 'query=sum(rate(slotd_http_requests_total[1m]))' \
        --data-urlencode start=2026-03-01T00:00:00+03:00 \
        --data-urlencode end=2026-03-01T23:59:00+03:00 --data-urlencode step=60 > day.json
  -from access-log: slotd's JSON access logs, one file per slotd process
      (their requests add up); slotd's log sampling is undone.

`

func profileCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("slotload profile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, profileUsage); fs.PrintDefaults() }
	from := fs.String("from", "", "`source`: prometheus or access-log")
	tz := fs.String("tz", "UTC", "IANA time `zone` of the profile's HH:MM (the office's, e.g. Europe/Moscow)")
	rebase := fs.Bool("rebase", false, "start the profile at 00:00 with the first minute of data, not at its clock time")
	route := fs.String("route", "", "access-log: count only this route `pattern`, e.g. /v1/offices/{office}/days (the arrivals of a peak day)")
	method := fs.String("method", "", "access-log: count only this `method`")
	sampling := fs.String("sampling", "100,100", "access-log: the writer's sampling per second, `first,thereafter`; off when it wrote every line")
	out := fs.String("out", "", "`file` to write the profile to [standard output]")
	if err := fs.Parse(args); err != nil {
		return exitFlags(err)
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "slotload profile: "+format+"\n", a...)
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	loc, err := time.LoadLocation(*tz)
	if err != nil {
		return fail("-tz %q: want an IANA time zone such as Europe/Moscow", *tz)
	}
	opts := loadtest.ProfileImport{Location: loc, Rebase: *rebase}
	var (
		p    loadtest.Profile
		note string
	)
	switch *from {
	case "prometheus":
		if fs.NArg() != 1 || *route != "" || *method != "" {
			return fail("-from prometheus reads one file and takes no -route or -method (filter in the query)")
		}
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			return fail("%v", err)
		}
		p, err = loadtest.ProfileFromPrometheus(bufio.NewReader(f), opts)
		f.Close()
		if err != nil {
			return fail("%s: %v", fs.Arg(0), err)
		}
		note = fmt.Sprintf("Prometheus range query %s", fs.Arg(0))
	case "access-log":
		s, err := parseSampling(*sampling)
		if err != nil {
			return fail("-sampling %q: %v", *sampling, err)
		}
		l := &loadtest.AccessLog{Sampling: s, Route: *route, Method: *method}
		for _, path := range fs.Args() {
			f, err := os.Open(path)
			if err != nil {
				return fail("%v", err)
			}
			err = l.Read(f)
			f.Close()
			if err != nil {
				return fail("%s: %v", path, err)
			}
		}
		if p, err = l.Profile(opts); err != nil {
			return fail("%s: %v", strings.Join(fs.Args(), ", "), err)
		}
		note = fmt.Sprintf("access logs %s: %d request lines", strings.Join(fs.Args(), ", "), l.Requests)
		if *route != "" || *method != "" {
			note += fmt.Sprintf(" of %s %s", *method, *route)
		}
		if l.Windows > 0 {
			note += fmt.Sprintf(", %d sampled seconds undone", l.Windows)
		}
		note += fmt.Sprintf(", about %.0f requests", l.Estimated)
	default:
		return fail("-from %q: want prometheus or access-log", *from)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# slotload profile from %s; minutes in %s", note, loc)
	if *rebase {
		b.WriteString(", rebased to 00:00")
	}
	fmt.Fprintf(&b, "\n# %d minutes, peak %s requests/s\n", len(p.Points), strconv.FormatFloat(p.PeakRate(), 'f', -1, 64))
	b.WriteString(p.String())
	if *out == "" {
		_, err = io.WriteString(stdout, b.String())
	} else {
		err = os.WriteFile(*out, []byte(b.String()), 0o644)
	}
	if err != nil {
		return fail("%v", err)
	}
	if *out != "" {
		fmt.Fprintf(stdout, "wrote %s: %d minutes, peak %s requests/s\n", *out, len(p.Points), strconv.FormatFloat(p.PeakRate(), 'f', -1, 64))
	}
	return 0
}

// parseSampling reads "first,thereafter" per second, or "off".
func parseSampling(s string) (loadtest.LogSampling, error) {
	if s == "off" {
		return loadtest.LogSampling{}, nil
	}
	a, b, ok := strings.Cut(s, ",")
	first, err1 := strconv.Atoi(strings.TrimSpace(a))
	then, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || first < 1 || then < 1 || first > 1e6 || then > 1e6 {
		return loadtest.LogSampling{}, fmt.Errorf("want first,thereafter (slotd's: 100,100) or off")
	}
	return loadtest.LogSampling{Tick: time.Second, First: first, Thereafter: then}, nil
}
