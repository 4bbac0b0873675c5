package httpapi

import (
	"strconv"
	"strings"

	"slotd/allocator"
)

// Limits on the Accept-Language header read: a browser sends a few
// languages; more is read no further, never refused.
const (
	acceptLanguageBytesMax   = 256 // bytes of the header read
	acceptLanguageEntriesMax = 16  // languages taken from it
)

// acceptLanguages returns the primary language subtags of an
// Accept-Language header (RFC 9110 §12.5.4), lowercase, most preferred
// first: by q, then by order in the header. Languages with q=0, "*" and
// malformed entries are left out; a malformed q counts as 1.
func acceptLanguages(header string) []string {
	if len(header) > acceptLanguageBytesMax {
		header = header[:acceptLanguageBytesMax]
	}
	type lang struct {
		tag string
		q   float64
	}
	var list []lang
	for entry := range strings.SplitSeq(header, ",") {
		if len(list) == acceptLanguageEntriesMax {
			break
		}
		tag, params, _ := strings.Cut(entry, ";")
		tag = strings.ToLower(strings.TrimSpace(tag))
		tag, _, _ = strings.Cut(tag, "-")
		if tag == "" || tag == "*" {
			continue
		}
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && f >= 0 && f <= 1 {
				q = f
			}
		}
		if q == 0 {
			continue
		}
		// Insert after every entry of at least the same q: a stable order.
		i := len(list)
		for i > 0 && list[i-1].q < q {
			i--
		}
		list = append(list, lang{})
		copy(list[i+1:], list[i:])
		list[i] = lang{tag, q}
	}
	out := make([]string, len(list))
	for i, l := range list {
		out[i] = l.tag
	}
	return out
}

// languages are the request's Accept-Language preferences (acceptLanguages).
func (r *request) languages() []string {
	return acceptLanguages(string(r.ctx.Request.Header.Peek("Accept-Language")))
}

// serviceConfig returns the config of service at office; nil if the office
// no longer offers it.
func serviceConfig(office *allocator.OfficeConfig, service string) *allocator.ServiceConfig {
	for i := range office.Services {
		if office.Services[i].ID == service {
			return &office.Services[i]
		}
	}
	return nil
}

// serviceName is the display name of service at office for a reader of
// langs (acceptLanguages): its name in the first of them it has one in,
// else its configured name, else its id (a service the office no longer
// offers keeps its id).
func serviceName(office *allocator.OfficeConfig, service string, langs []string) string {
	sc := serviceConfig(office, service)
	if sc == nil {
		return service
	}
	for _, l := range langs {
		if name, ok := sc.Names[l]; ok {
			return name
		}
	}
	if sc.Name != "" {
		return sc.Name
	}
	return service
}
