package peers

import (
	"reflect"
	"strings"
	"sync"
	"time"
)

// readFlat reads a flat answer into the client's types without
// encoding/json's decoder: the rush reads a booking answer per booking,
// on the cores the server under test runs on, and encoding/json takes
// about four times as long (BenchmarkParseBooking against
// BenchmarkReadBookingJSON). It knows no answer's
// members: it reads body into v, a pointer to the zero value of a struct
// (client.Booking), by the struct's json tags, if body is one object
// whose every member names a field exactly and holds a string of
// printable ASCII without escapes (for a string or time.Time field) or
// an integer of at most 18 digits (for an int field), with nothing but
// white space around. Whatever it accepts, json.Unmarshal reads into the
// same values (FuzzReadFlat). For anything else — a member the struct
// lacks, an array, null, an escape — it reports false, having perhaps
// set some fields, and the caller zeroes v and decodes with encoding/json.
func readFlat(body []byte, v any) bool {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return false
	}
	fields := flatFieldsOf(rv.Type().Elem())
	if fields == nil {
		return false
	}
	st := rv.Elem()
	i := skipJSONSpace(body, 0)
	if i == len(body) || body[i] != '{' {
		return false
	}
	i = skipJSONSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return skipJSONSpace(body, i+1) == len(body)
	}
	for {
		name, next, ok := plainJSONString(body, i)
		if !ok {
			return false
		}
		i = skipJSONSpace(body, next)
		if i == len(body) || body[i] != ':' {
			return false
		}
		i = skipJSONSpace(body, i+1)
		f, ok := fields.find(name)
		if !ok {
			return false
		}
		switch field := st.Field(f.index); f.kind {
		case flatString:
			s, next, ok := plainJSONString(body, i)
			if !ok {
				return false
			}
			field.SetString(string(s))
			i = next
		case flatTime:
			_, next, ok := plainJSONString(body, i)
			if !ok || field.Addr().Interface().(*time.Time).UnmarshalJSON(body[i:next]) != nil {
				return false
			}
			i = next
		case flatInt:
			n, next, ok := plainJSONInt(body, i)
			if !ok {
				return false
			}
			field.SetInt(n)
			i = next
		default:
			return false
		}
		i = skipJSONSpace(body, i)
		if i == len(body) {
			return false
		}
		switch body[i] {
		case ',':
			i = skipJSONSpace(body, i+1)
		case '}':
			return skipJSONSpace(body, i+1) == len(body)
		default:
			return false
		}
	}
}

// Kinds of field readFlat reads; flatOther makes it decline.
const (
	flatOther = iota
	flatString
	flatInt
	flatTime
)

// flatField is one field of a struct as encoding/json names it.
type flatField struct {
	name  string
	index int
	kind  int
}

type flatFields []flatField

func (fs flatFields) find(name []byte) (flatField, bool) {
	for _, f := range fs {
		if f.name == string(name) {
			return f, true
		}
	}
	return flatField{}, false
}

// flatFieldCache maps a struct type to its fields, or to nil when
// readFlat never reads it.
var flatFieldCache sync.Map // reflect.Type → flatFields

// flatFieldsOf lists the fields of struct type t that encoding/json
// decodes, by their tags' names; nil if t is not a struct, embeds a field
// or has a tag name or option that changes decoding.
func flatFieldsOf(t reflect.Type) flatFields {
	if c, ok := flatFieldCache.Load(t); ok {
		return c.(flatFields)
	}
	var fs flatFields
	if t.Kind() == reflect.Struct {
		fs = flatFields{}
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Anonymous {
				fs = nil
				break
			}
			tag := f.Tag.Get("json")
			if !f.IsExported() || tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if opts != "" && opts != "omitempty" || !plainJSONName(name) {
				fs = nil
				break
			}
			ff := flatField{name: name, index: i, kind: flatOther}
			switch {
			case f.Type == reflect.TypeFor[time.Time]():
				ff.kind = flatTime
			case f.Type.Kind() == reflect.String:
				ff.kind = flatString
			case f.Type.Kind() == reflect.Int:
				ff.kind = flatInt
			}
			fs = append(fs, ff)
		}
	}
	flatFieldCache.Store(t, fs)
	return fs
}

// plainJSONName reports whether a tag name is letters, digits, '_' and
// '-' only, which encoding/json takes as given.
func plainJSONName(name string) bool {
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return name != ""
}

func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainJSONString reads the JSON string at b[i] if it holds only
// printable ASCII and no escape: its content and the index after its
// closing quote.
func plainJSONString(b []byte, i int) (s []byte, next int, ok bool) {
	if i == len(b) || b[i] != '"' {
		return nil, i, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c < 0x20 || c > 0x7e || c == '\\':
			return nil, i, false
		}
	}
	return nil, i, false
}

// plainJSONInt reads the JSON integer at b[i] of at most 18 digits (so
// that it fits an int64), optionally negative: its value and the index
// after it. A number with a fraction or an exponent is refused.
func plainJSONInt(b []byte, i int) (n int64, next int, ok bool) {
	neg := i < len(b) && b[i] == '-'
	j := i
	if neg {
		j++
	}
	from := j
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		n = n*10 + int64(b[j]-'0')
		j++
	}
	digits := j - from
	if digits == 0 || digits > 18 || digits > 1 && b[from] == '0' {
		return 0, i, false
	}
	if j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E') {
		return 0, i, false
	}
	if neg {
		n = -n
	}
	return n, j, true
}
