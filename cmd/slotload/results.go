package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"slotd/loadtest"
)

// subcommands of slotload besides the run itself. Each takes its own
// flags and returns the exit status: 0 done, 2 it could not be done.
var subcommands = map[string]func(args []string, stdout, stderr io.Writer) int{
	"report":  reportCmd,
	"merge":   mergeCmd,
	"profile": profileCmd,
}

const reportUsage = `usage: slotload report [-out dir] results.bin...

Reads raw results (results.bin of a run, or anything vegeta writes: gob,
JSON or CSV results; several files are merged by time) and prints the
answers per step with their latencies and classes, then vegeta's text
report of all. With -out, writes the per-step reports a run writes
(<step>.txt, .json, .hdr).
`

func reportCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("slotload report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, reportUsage); fs.PrintDefaults() }
	out := fs.String("out", "", "`directory` for the per-step reports")
	if err := fs.Parse(args); err != nil {
		return exitFlags(err)
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	dec, closeAll, err := openAll(fs.Args())
	if err != nil {
		fmt.Fprintln(stderr, "slotload report:", err)
		return 2
	}
	defer closeAll()
	if len(fs.Args()) > 1 {
		// Merged by time on the fly, as merge would.
		pr, pw := io.Pipe()
		inputs := dec
		go func() {
			w := bufio.NewWriter(pw)
			_, err := loadtest.MergeResults(vegeta.NewEncoder(w), fs.Args(), inputs...)
			if err == nil {
				err = w.Flush()
			}
			pw.CloseWithError(err)
		}()
		dec = []vegeta.Decoder{vegeta.NewDecoder(pr)}
	}
	rep, err := loadtest.ReportResults(dec[0])
	if err != nil {
		if fs.NArg() == 1 { // merged: the error names its file
			err = fmt.Errorf("%s: %w", fs.Arg(0), err)
		}
		fmt.Fprintln(stderr, "slotload report:", err)
		return 2
	}
	if err := rep.WriteSummary(stdout); err != nil {
		fmt.Fprintln(stderr, "slotload report:", err)
		return 2
	}
	if *out != "" {
		files, err := rep.WriteFiles(*out)
		for _, f := range files {
			fmt.Fprintln(stdout, "wrote", f)
		}
		if err != nil {
			fmt.Fprintln(stderr, "slotload report:", err)
			return 2
		}
	}
	return 0
}

const mergeUsage = `usage: slotload merge -out all.bin a.bin b.bin...

Merges raw results of several generators (results.bin of each, or any
vegeta results) by time into one file in vegeta's gob encoding, for
slotload report, vegeta report or vegeta plot.
`

func mergeCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("slotload merge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, mergeUsage); fs.PrintDefaults() }
	out := fs.String("out", "", "`file` to write the merged results to (required)")
	if err := fs.Parse(args); err != nil {
		return exitFlags(err)
	}
	if *out == "" || fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	for _, in := range fs.Args() {
		if same, _ := sameFile(in, *out); same {
			fmt.Fprintf(stderr, "slotload merge: %s is both an input and the output\n", in)
			return 2
		}
	}
	decs, closeAll, err := openAll(fs.Args())
	if err != nil {
		fmt.Fprintln(stderr, "slotload merge:", err)
		return 2
	}
	defer closeAll()
	f, err := os.Create(*out)
	if err != nil {
		fmt.Fprintln(stderr, "slotload merge:", err)
		return 2
	}
	w := bufio.NewWriter(f)
	n, err := loadtest.MergeResults(vegeta.NewEncoder(w), fs.Args(), decs...)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintln(stderr, "slotload merge:", err)
		return 2
	}
	fmt.Fprintf(stdout, "wrote %s: %d results from %d files\n", *out, n, fs.NArg())
	return 0
}

// openAll opens every results file; the returned func closes them.
func openAll(paths []string) ([]vegeta.Decoder, func(), error) {
	var (
		decs    []vegeta.Decoder
		closers []io.Closer
	)
	closeAll := func() {
		for _, c := range closers {
			c.Close()
		}
	}
	for _, p := range paths {
		dec, c, err := loadtest.OpenResults(p)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		decs, closers = append(decs, dec), append(closers, c)
	}
	return decs, closeAll, nil
}

// sameFile reports whether a and b name one existing file.
func sameFile(a, b string) (bool, error) {
	fa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	fb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(fa, fb), nil
}

// exitFlags is the exit status after a flag error: 0 for -h.
func exitFlags(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}
