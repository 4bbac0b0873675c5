package clusterbench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"slotd/api"
	"slotd/bench/peers"
)

// What the bench asks of a running slotd over its API and admin routes:
// the rush's office, the cluster's status, and the bookings stored.

// agendaPage is the page size of the agenda reads (the API's maximum).
const agendaPage = 200

// responseBytesMax bounds an answer the bench reads whole.
const responseBytesMax = 16 << 20

// call sends a request with key to the API at addr and decodes a JSON
// answer into out (when out is set and the status is 2xx). It returns
// the status and, for anything but 2xx, the body as an error's text.
func call(ctx context.Context, addr, key, method, path string, body []byte, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, responseBytesMax))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// officeJSON is the rush's office as PUT /v1/offices/{id} takes it: the
// layout's grid, windows and hours on every weekday, one service, and
// the default policy with a horizon that covers the layout's dates.
func officeJSON(lay *peers.Layout) []byte {
	hours := fmt.Sprintf(`["%02d:%02d-%02d:%02d"]`, lay.OpenMinute/60, lay.OpenMinute%60, lay.CloseMinute/60, lay.CloseMinute%60)
	var week []string
	for _, d := range []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"} {
		week = append(week, fmt.Sprintf("%q:%s", d, hours))
	}
	return fmt.Appendf(nil, `{"id":%q,"name":"Bench office","region":"bench","city":"Bench","address":"-","timezone":"UTC",`+
		`"slot_minutes":%d,"windows":%d,"hours":{%s},"services":[{"id":%q,"name":"Bench service","slots":1}],`+
		`"policy":{"horizon_days":60}}`,
		lay.Office, lay.StepMinutes, lay.Windows, strings.Join(week, ","), lay.Service)
}

// setupOffice creates the layout's office through addr and releases
// every date of the layout.
func setupOffice(ctx context.Context, addr string, lay *peers.Layout) error {
	if _, err := call(ctx, addr, adminKey, http.MethodPut, "/v1/offices/"+lay.Office, officeJSON(lay), nil); err != nil {
		return fmt.Errorf("cannot create the bench office: %w", err)
	}
	body := fmt.Appendf(nil, `{"through":%q}`, lay.Dates[len(lay.Dates)-1])
	if _, err := call(ctx, addr, adminKey, http.MethodPost, "/v1/offices/"+lay.Office+"/release", body, nil); err != nil {
		return fmt.Errorf("cannot release the bench dates: %w", err)
	}
	return nil
}

// agendaReader reads the bookings slotd stored through the operator's
// agenda (GET /v1/offices/{office}/days/{date}/bookings): what the
// serving engine holds, which in a cluster is the group leader's, built
// from its replica of the group's store. It is peers.Verify's reader.
type agendaReader struct {
	addr string
}

// Active returns the bookings of office on date that own a seat.
func (a agendaReader) Active(ctx context.Context, office, date string) ([]peers.Booking, error) {
	var out []peers.Booking
	cursor := ""
	for {
		q := url.Values{"limit": {fmt.Sprint(agendaPage)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page struct {
			Bookings   []api.Booking `json:"bookings"`
			NextCursor string        `json:"next_cursor"`
		}
		if _, err := call(ctx, a.addr, adminKey, http.MethodGet, "/v1/offices/"+office+"/days/"+date+"/bookings?"+q.Encode(), nil, &page); err != nil {
			return nil, err
		}
		for _, b := range page.Bookings {
			if api.StatusActive(b.Status) {
				out = append(out, peers.Booking{ID: b.ID, Number: b.Number, Office: b.Office, Service: b.Service,
					Applicant: b.Applicant, Window: b.Window, Start: b.Start, End: b.End, Status: b.Status})
			}
		}
		if page.NextCursor == "" {
			return out, nil
		}
		cursor = page.NextCursor
	}
}

// groupStatus is one group in a node's /cluster/status.
type groupStatus struct {
	Group   uint64 `json:"group"`
	Leader  uint64 `json:"leader"`
	Term    uint64 `json:"term"`
	Applied uint64 `json:"applied"`
	Digest  string `json:"digest"`
	Engine  bool   `json:"engine"`
}

// status reads the node's view of group.
func (s *server) status(group uint64) (groupStatus, error) {
	resp, err := httpClient.Get("http://" + s.admin + "/cluster/status")
	if err != nil {
		return groupStatus{}, err
	}
	defer resp.Body.Close()
	var out struct {
		Groups []groupStatus `json:"groups"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, responseBytesMax)).Decode(&out); err != nil {
		return groupStatus{}, fmt.Errorf("%s: /cluster/status: %w", s.name(), err)
	}
	for _, g := range out.Groups {
		if g.Group == group {
			return g, nil
		}
	}
	return groupStatus{}, fmt.Errorf("%s: /cluster/status lists no group %d", s.name(), group)
}
