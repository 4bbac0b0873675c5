package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"slotd/allocator"
	"slotd/api"
	"slotd/internal/flatjson"
)

// Limits on request fields.
const (
	applicantBytesMax = 128                      // the engine allows more: it also holds the namespace (namespace.go)
	reasonBytesMax    = allocator.ReasonBytesMax // the engine refuses more
	ticketBytesMax    = 256
	idBytesMax        = 64 // office and service ids (the engine allows 63)
)

// A key's name is the Actor of every change made with it: the engine
// refuses an actor longer than allocator.ActorBytesMax, so every name the
// keys file admits must fit (checked when this compiles: a negative
// constant does not convert to uint).
const _ = uint(allocator.ActorBytesMax - keyNameBytesMax)

// decodeBody decodes a JSON object body into v, a pointer to a zero
// value, strictly: unknown fields, wrong types and trailing data are
// refused with a detail naming the field. An empty body is an empty
// object. A plain body is read by flatjson.Decode, without
// encoding/json's decoder; whatever that declines takes encoding/json's
// way, with its messages (FuzzDecodeBody holds the two to the same
// result).
func decodeBody(body []byte, v any) error {
	if flatjson.Decode(body, v) {
		return nil
	}
	reflect.ValueOf(v).Elem().SetZero() // forget what Decode set
	return decodeBodyJSON(body, v)
}

// decodeBodyJSON is decodeBody by encoding/json alone.
func decodeBodyJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if err := checkUnicode(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New(jsonProblem(err, "the body"))
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// checkUnicode refuses a JSON text that is not Unicode: a byte that is
// not part of valid UTF-8, or a \u escape of half a UTF-16 surrogate pair
// without the other half. encoding/json reads both as U+FFFD without a
// word, and ids are compared byte for byte: "a\xff" and "a\xfe" would be
// one applicant, who could act on the other's bookings. RFC 8259 asks for
// UTF-8; the whole body is held to it, free text too, since a reason
// rewritten behind the client's back is no better. Only bodies that
// flatjson declines come here: it reads printable ASCII alone.
func checkUnicode(body []byte) error {
	for i := 0; i < len(body); {
		c := body[i]
		switch {
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(body[i:])
			if r == utf8.RuneError && size == 1 {
				return fmt.Errorf("the body is not valid UTF-8 at byte %d: JSON text, ids included, must be UTF-8", i)
			}
			i += size
		case c == '\\':
			r, ok := escapedRune(body, i)
			if !ok || !utf16.IsSurrogate(r) {
				i += 2 // a malformed escape is left to the decoder, which names it
				continue
			}
			if low, ok := escapedRune(body, i+6); ok && r < 0xdc00 && 0xdc00 <= low && low < 0xe000 {
				i += 12 // a surrogate pair: one character
				continue
			}
			return fmt.Errorf("the string escape %s at byte %d is half of a UTF-16 surrogate pair, not a character: strings must be valid UTF-8 text", body[i:i+6], i)
		default:
			i++
		}
	}
	return nil
}

// escapedRune reads the escape \uXXXX at body[i:], if it is one.
func escapedRune(body []byte, i int) (rune, bool) {
	if i+6 > len(body) || body[i] != '\\' || body[i+1] != 'u' {
		return 0, false
	}
	n, err := strconv.ParseUint(string(body[i+2:i+6]), 16, 16)
	return rune(n), err == nil
}

// checkQueryValue refuses a query value that is not valid UTF-8 (after
// percent-decoding), for the reason checkUnicode gives for bodies.
func checkQueryValue(name string, v []byte) error {
	if !utf8.Valid(v) {
		return fmt.Errorf("query parameter %q is not valid UTF-8: percent-escapes must encode UTF-8 text", name)
	}
	return nil
}

// jsonProblem turns a decoding error into a sentence without Go type
// names; whole names what was decoded ("the body", "the entry") for an
// error about all of it.
func jsonProblem(err error, whole string) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		if te.Field == "" {
			return fmt.Sprintf("%s must be %s, got JSON %s", whole, jsonKindName(te.Type), te.Value)
		}
		return fmt.Sprintf("field %q must be %s, got JSON %s", te.Field, kindName(te.Type), te.Value)
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Sprintf("malformed JSON: %s ends early", whole)
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	return strings.ReplaceAll(msg, "allocator: validation failed: ", "")
}

// FileJSONProblem describes the error of decoding a whole file, data,
// as one sentence for a person who edits the file: where a syntax error
// is (line and column, counted from 1), or, for a file of the wrong kind,
// that it must be want ("a JSON array of …").
func FileJSONProblem(data []byte, err error, want string) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field == "" {
		return fmt.Sprintf("the file must be %s, got JSON %s", want, te.Value)
	}
	if errors.As(err, &se) {
		if se.Offset >= int64(len(data)) && strings.Contains(se.Error(), "unexpected end of JSON input") {
			return "malformed JSON: the file ends early"
		}
		line, col := lineColumn(data, se.Offset)
		return fmt.Sprintf("malformed JSON at line %d, column %d: %s", line, col, strings.TrimPrefix(se.Error(), "json: "))
	}
	return jsonProblem(err, "the file")
}

// lineColumn returns the line and column, from 1, of the byte before
// offset: where encoding/json's SyntaxError.Offset says it stopped.
func lineColumn(data []byte, offset int64) (line, col int) {
	at := max(0, min(int(offset)-1, len(data)))
	before := data[:at]
	line = 1 + bytes.Count(before, []byte("\n"))
	col = 1 + utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:])
	return line, col
}

// jsonKindName names a JSON value kind with an article: what a whole
// document must be.
func jsonKindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "a JSON object"
	case reflect.Slice, reflect.Array:
		return "a JSON array"
	}
	return kindName(t)
}

// kindName names a Go type the way a JSON client thinks of it.
func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "another type"
}

// appendJSON appends v encoded by encoding/json (cold paths only).
func appendJSON(b []byte, v any) []byte {
	out, err := json.Marshal(v)
	if err != nil {
		panic("BUG: httpapi: cannot encode a response: " + err.Error())
	}
	return append(b, out...)
}

// parseTime parses an RFC 3339 time with an explicit offset.
func parseTime(field, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		hint := ""
		if strings.Contains(s, " ") {
			hint = " (in a query string, write + as %2B)"
		}
		return time.Time{}, fmt.Errorf("%s %q is not an RFC 3339 time such as 2026-12-01T09:15:00+03:00%s", field, s, hint)
	}
	return t, nil
}

// parseDate parses a YYYY-MM-DD date.
func parseDate(field, s string) (allocator.Date, error) {
	d, err := allocator.ParseDate(s)
	if err != nil {
		return 0, fmt.Errorf("%s %q is not a date YYYY-MM-DD", field, s)
	}
	return d, nil
}

// checkText bounds a free-text or id field.
func checkText(field, s string, maxBytes int) error {
	if len(s) > maxBytes {
		return fmt.Errorf("%s is %d bytes, at most %d", field, len(s), maxBytes)
	}
	return nil
}

// query reads the query string strictly: only the named parameters are
// accepted, each at most once.
type query struct {
	r   *request
	err error
}

// newQuery checks that the query has only the allowed names, each once.
func newQuery(r *request, allowed ...string) *query {
	q := &query{r: r}
	seen := map[string]bool{}
	r.ctx.QueryArgs().VisitAll(func(k, v []byte) {
		if q.err != nil {
			return
		}
		name := string(k)
		ok := false
		for _, a := range allowed {
			if a == name {
				ok = true
				break
			}
		}
		switch {
		case !ok:
			q.err = fmt.Errorf("unknown query parameter %q (accepted: %s)", name, strings.Join(allowed, ", "))
		case seen[name]:
			q.err = fmt.Errorf("query parameter %q is given twice", name)
		default:
			q.err = checkQueryValue(name, v)
		}
		seen[name] = true
	})
	return q
}

// str returns a parameter ("" when absent).
func (q *query) str(name string, maxBytes int) string {
	v := string(q.r.ctx.QueryArgs().Peek(name))
	if q.err == nil {
		if err := checkText(name, v, maxBytes); err != nil {
			q.err = err
		}
	}
	return v
}

// date returns a date parameter, ok false when absent.
func (q *query) date(name string) (allocator.Date, bool) {
	v := q.r.ctx.QueryArgs().Peek(name)
	if v == nil {
		return 0, false
	}
	d, err := parseDate(name, string(v))
	if err != nil && q.err == nil {
		q.err = err
	}
	return d, err == nil
}

// time returns an RFC 3339 parameter, ok false when absent.
func (q *query) time(name string) (time.Time, bool) {
	v := q.r.ctx.QueryArgs().Peek(name)
	if v == nil {
		return time.Time{}, false
	}
	t, err := parseTime(name, string(v))
	if err != nil && q.err == nil {
		q.err = err
	}
	return t, err == nil
}

// int returns an integer parameter in [lo, hi], def when absent.
func (q *query) int(name string, def, lo, hi int) int {
	v := q.r.ctx.QueryArgs().Peek(name)
	if v == nil {
		return def
	}
	n, err := strconv.Atoi(string(v))
	if (err != nil || n < lo || n > hi) && q.err == nil {
		q.err = fmt.Errorf("%s %q must be an integer in %d..%d", name, v, lo, hi)
		return def
	}
	return n
}

// uint64 returns an unsigned parameter, def when absent.
func (q *query) uint64(name string, def uint64) uint64 {
	v := q.r.ctx.QueryArgs().Peek(name)
	if v == nil {
		return def
	}
	n, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil && q.err == nil {
		q.err = fmt.Errorf("%s %q must be a cursor from a previous next_cursor", name, v)
		return def
	}
	return n
}

// bool returns a true/false parameter, false when absent.
func (q *query) bool(name string) bool {
	v := q.r.ctx.QueryArgs().Peek(name)
	switch string(v) {
	case "", "false":
		if v != nil && len(v) == 0 && q.err == nil {
			q.err = fmt.Errorf("%s must be true or false", name)
		}
		return false
	case "true":
		return true
	}
	if q.err == nil {
		q.err = fmt.Errorf("%s %q must be true or false", name, v)
	}
	return false
}

// ok answers 400 with the first problem and returns false if there was one.
func (q *query) ok() bool {
	if q.err != nil {
		q.r.invalid("%s", q.err.Error())
		return false
	}
	return true
}

// applicant resolves the applicant from the body and ?applicant=: one of
// them, or both equal. required refuses neither.
func (r *request) applicant(fromBody string, required bool) (string, bool) {
	qv := r.ctx.QueryArgs().Peek("applicant")
	a := fromBody
	switch {
	case qv != nil && a != "" && string(qv) != a:
		r.invalid("applicant differs between the body and ?applicant=")
		return "", false
	case qv != nil:
		a = string(qv)
	}
	if a == "" && required {
		r.invalid("applicant is required (in the body or as ?applicant=)")
		return "", false
	}
	if len(a) > applicantBytesMax {
		r.invalid("applicant is %d bytes, at most %d", len(a), applicantBytesMax)
		return "", false
	}
	return a, true
}

// bookingID parses the {id} path parameter. A malformed id answers 404:
// no booking has it.
func (r *request) bookingID() (allocator.ID, bool) {
	id, err := allocator.ParseID(r.param(0))
	if err != nil {
		r.fail(problem{code: api.CodeNotFound, detail: "no booking has this id (ids are 22 URL-safe characters)"})
		return id, false
	}
	return id, true
}

// reasonOK answers 400 and reports false when a reason is too long or not
// printable text.
func (r *request) reasonOK(reason string) bool {
	if err := checkText("reason", reason, reasonBytesMax); err != nil {
		r.invalid("%v", err)
		return false
	}
	return true
}

// requiredDate parses a required YYYY-MM-DD field, answering 400 when it is
// missing or malformed.
func (r *request) requiredDate(field, value string) (allocator.Date, bool) {
	if value == "" {
		r.invalid("%s is required, YYYY-MM-DD", field)
		return 0, false
	}
	d, err := parseDate(field, value)
	if err != nil {
		r.invalid("%v", err)
		return 0, false
	}
	return d, true
}

// requiredTime parses a required RFC 3339 field, answering 400 when it is
// missing or malformed.
func (r *request) requiredTime(field, value string) (time.Time, bool) {
	if value == "" {
		r.invalid("%s is required, an RFC 3339 time with the office's offset", field)
		return time.Time{}, false
	}
	t, err := parseTime(field, value)
	if err != nil {
		r.invalid("%v", err)
		return time.Time{}, false
	}
	return t, true
}
