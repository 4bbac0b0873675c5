package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"slotd/allocator"
	"slotd/httpapi"
)

// The files slotd reads at start: the keys file (-keys, or the
// development keys of -demo) and the offices file (-offices, and the demo
// offices). They are read and checked before anything starts, so that a
// bad one stops the start with one line, "slotd: keys file PATH: what is
// wrong" and exit status 2, as a bad flag does: the person who wrote the
// file reads that line, not a log line with a stack trace. The keys file
// is read again on each reload (reload.go).

// startFiles is what the files hold.
type startFiles struct {
	keys    []httpapi.Key
	offices []allocator.OfficeConfig
}

// readStartFiles reads and checks the keys and offices files; with -demo
// and no keys file it makes or reads the development keys and prints them.
func readStartFiles(opts options, stdout io.Writer) (startFiles, error) {
	if opts.keys == "" && !opts.demo {
		return startFiles{}, errors.New("no API keys: give -keys FILE, or -demo for development keys")
	}
	keys, err := readKeys(opts)
	if err != nil {
		return startFiles{}, fmt.Errorf("keys file %s: %w", keysPath(opts), err)
	}
	offices, err := loadOffices(opts)
	if err != nil {
		return startFiles{}, err
	}
	if opts.keys == "" {
		fmt.Fprintf(stdout, "Development keys (kept in %s; never use them in production):\n", keysPath(opts))
		for _, k := range keys {
			secret := k.Key
			if secret == "" { // an edited file that rotates: the newest secret
				secret = k.Keys[len(k.Keys)-1]
			}
			fmt.Fprintf(stdout, "  %-14s %-24s Authorization: Bearer %s\n", k.Name, strings.Join(k.Scopes, ","), secret)
		}
	}
	return startFiles{keys: keys, offices: offices}, nil
}

// keysPath is the keys file in use: -keys, or the development keys.
func keysPath(opts options) string {
	if opts.keys != "" {
		return opts.keys
	}
	return filepath.Join(opts.data, devKeysFile)
}

// readKeys reads and checks the keys file, or the development keys (made
// on first use). Its errors say what is wrong; the caller names the file.
func readKeys(opts options) ([]httpapi.Key, error) {
	var data []byte
	var err error
	if opts.keys != "" {
		data, err = os.ReadFile(opts.keys)
	} else {
		data, err = devKeys(opts.data)
	}
	if err != nil {
		return nil, readProblem(err)
	}
	return httpapi.LoadKeys(data)
}

// readProblem drops the path from a file system error: the caller names
// the file already.
func readProblem(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// loadOffices returns the -offices file's offices, then the demo offices.
func loadOffices(opts options) ([]allocator.OfficeConfig, error) {
	var out []allocator.OfficeConfig
	if opts.offices != "" {
		data, err := os.ReadFile(opts.offices)
		if err == nil {
			out, err = decodeOffices(data)
		}
		if err != nil {
			return nil, fmt.Errorf("offices file %s: %w", opts.offices, readProblem(err))
		}
	}
	if opts.demo {
		cfgs, err := decodeOffices(demoOffices)
		if err != nil {
			return nil, fmt.Errorf("BUG: demo offices: %w", err)
		}
		out = append(out, cfgs...)
	}
	return out, nil
}

// decodeOffices decodes and validates an offices file: a JSON array of
// office objects with distinct ids, each as PUT /v1/offices/{id} takes
// it. It does the decoding allocator.DecodeOfficeConfigs does, with
// errors that point into the file (a line and column, an entry's index
// and id) instead of naming Go types.
func decodeOffices(data []byte) ([]allocator.OfficeConfig, error) {
	var raws []json.RawMessage
	if err := json.Unmarshal(data, &raws); err != nil {
		return nil, errors.New(httpapi.FileJSONProblem(data, err, "a JSON array of offices, each in the shape PUT /v1/offices/{id} takes"))
	}
	out := make([]allocator.OfficeConfig, 0, len(raws))
	seen := make(map[string]int, len(raws))
	for i, raw := range raws {
		if kind := jsonKind(raw); kind != "object" {
			return nil, fmt.Errorf("offices[%d]: the entry must be a JSON object, got JSON %s", i, kind)
		}
		cfg, err := allocator.DecodeOfficeConfig(raw)
		if err != nil {
			return nil, fmt.Errorf("offices[%d]: %s", i, officeProblem(err, ""))
		}
		if err := cfg.Validate(); err != nil {
			if !officeIDPattern.MatchString(cfg.ID) { // the problem names it, quoted
				return nil, fmt.Errorf("offices[%d]: %s", i, officeProblem(err, cfg.ID))
			}
			return nil, fmt.Errorf("offices[%d] (%s): %s", i, cfg.ID, officeProblem(err, cfg.ID))
		}
		if j, dup := seen[cfg.ID]; dup {
			return nil, fmt.Errorf("offices[%d] (%s): the id is used by offices[%d] too", i, cfg.ID, j)
		}
		seen[cfg.ID] = i
		out = append(out, cfg)
	}
	return out, nil
}

// officeIDPattern matches the office ids that are safe to print as they
// are (the allocator's rule, or a subset of it): the line names an entry
// by its id only when it is one of them.
var officeIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// officeProblem is the allocator's sentence about an office, without the
// prefixes that the file's line says already.
func officeProblem(err error, id string) string {
	msg := strings.TrimPrefix(err.Error(), allocator.ErrValidation.Error()+": ")
	msg = strings.TrimPrefix(msg, "office: ")
	return strings.TrimPrefix(msg, "office "+id+": ")
}

// jsonKind names the kind of a valid JSON value by its first byte.
func jsonKind(raw json.RawMessage) string {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}
