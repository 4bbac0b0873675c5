package clusterbench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	openapi_types "github.com/oapi-codegen/runtime/types"

	"slotd/api"
	"slotd/bench/peers"
	"slotd/client"
)

// What the bench asks of a running slotd over its API and admin routes:
// the rush's office, the cluster's status, and the bookings stored. The
// API calls go through the client generated from the API's spec
// (package client); the admin routes are not part of the spec.

// agendaPage is the page size of the agenda reads (the API's maximum).
const agendaPage = 200

// responseBytesMax bounds an answer the bench reads whole.
const responseBytesMax = 16 << 20

// boundedDoer sends requests with httpClient and bounds every answer's
// body by responseBytesMax.
type boundedDoer struct{}

func (boundedDoer) Do(req *http.Request) (*http.Response, error) {
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body = http.MaxBytesReader(nil, resp.Body, responseBytesMax)
	return resp, nil
}

// apiOf is the generated client of the API at addr, acting with key.
func apiOf(addr, key string) *client.ClientWithResponses {
	c, err := client.NewClientWithResponses("http://"+addr, client.WithHTTPClient(boundedDoer{}),
		client.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
			req.Header.Set("Authorization", "Bearer "+key)
			return nil
		}))
	if err != nil {
		panic("BUG: clusterbench: the generated client refused its options: " + err.Error())
	}
	return c
}

// refused is the error of an answer that is not the one wanted.
func refused(what string, status int, body []byte) error {
	return fmt.Errorf("%s: %d %s", what, status, strings.TrimSpace(string(body)))
}

// officeConfig is the rush's office as PUT /v1/offices/{id} takes it:
// the layout's grid, windows and hours on every weekday, one service,
// and the default policy with a horizon that covers the layout's dates.
func officeConfig(lay *peers.Layout) client.OfficeConfig {
	hours := fmt.Sprintf("%02d:%02d-%02d:%02d", lay.OpenMinute/60, lay.OpenMinute%60, lay.CloseMinute/60, lay.CloseMinute%60)
	week := map[string][]string{}
	for _, d := range []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"} {
		week[d] = []string{hours}
	}
	return client.OfficeConfig{Id: &lay.Office, Name: "Bench office", Region: "bench", City: new("Bench"), Address: new("-"),
		Timezone: "UTC", SlotMinutes: lay.StepMinutes, Windows: lay.Windows, Hours: week,
		Services: []client.OfficeConfig_Services{{Id: lay.Service, Name: new("Bench service"), Slots: 1}},
		Policy:   &client.OfficeConfig_Policy{HorizonDays: new(60)}}
}

// setupOffice creates the layout's office through addr and releases
// every date of the layout.
func setupOffice(ctx context.Context, addr string, lay *peers.Layout) error {
	c := apiOf(addr, adminKey)
	put, err := c.PutOfficeWithResponse(ctx, lay.Office, officeConfig(lay))
	if err != nil {
		return fmt.Errorf("cannot create the bench office: %w", err)
	}
	if put.StatusCode()/100 != 2 {
		return fmt.Errorf("cannot create the bench office: %w", refused("PUT /v1/offices/"+lay.Office, put.StatusCode(), put.Body))
	}
	last := lay.Dates[len(lay.Dates)-1]
	through, err := time.Parse(time.DateOnly, last)
	if err != nil {
		return fmt.Errorf("the layout's date %q: %w", last, err)
	}
	rel, err := c.ReleaseWithResponse(ctx, lay.Office, &client.ReleaseParams{},
		client.ReleaseJSONRequestBody{Through: openapi_types.Date{Time: through}})
	if err != nil {
		return fmt.Errorf("cannot release the bench dates: %w", err)
	}
	if rel.StatusCode()/100 != 2 {
		return fmt.Errorf("cannot release the bench dates: %w", refused("POST /v1/offices/"+lay.Office+"/release", rel.StatusCode(), rel.Body))
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
	day, err := time.Parse(time.DateOnly, date)
	if err != nil {
		return nil, fmt.Errorf("bad date %q: %w", date, err)
	}
	c := apiOf(a.addr, adminKey)
	var out []peers.Booking
	params := &client.AgendaParams{Limit: new(agendaPage)}
	for {
		page, err := c.AgendaWithResponse(ctx, office, openapi_types.Date{Time: day}, params)
		if err != nil {
			return nil, err
		}
		if page.JSON200 == nil {
			return nil, refused("GET /v1/offices/"+office+"/days/"+date+"/bookings", page.StatusCode(), page.Body)
		}
		for i := range page.JSON200.Bookings {
			if b := &page.JSON200.Bookings[i]; api.StatusActive(string(b.Status)) {
				out = append(out, peers.BookingOf(b))
			}
		}
		if page.JSON200.NextCursor == "" {
			return out, nil
		}
		params.Cursor = &page.JSON200.NextCursor
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

// officeGroup returns the group that answers for office, as a node's
// front names it (X-Slotd-Group).
func officeGroup(addr, office string) (uint64, error) {
	req, err := http.NewRequest("GET", "http://"+addr+"/v1/offices/"+url.PathEscape(office), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+adminKey)
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, responseBytesMax))
	g, err := strconv.ParseUint(resp.Header.Get("X-Slotd-Group"), 10, 8)
	if resp.StatusCode != http.StatusOK || err != nil {
		return 0, fmt.Errorf("GET /v1/offices/%s: %d, X-Slotd-Group %q", office, resp.StatusCode, resp.Header.Get("X-Slotd-Group"))
	}
	return g, nil
}
