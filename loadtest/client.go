package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	openapi_types "github.com/oapi-codegen/runtime/types"

	"slotd/client"
)

// apiClient makes the setup and check calls of a run (not the load
// itself, which goes through vegeta) through the client generated from
// the API's spec (package client): its request builders write the paths,
// queries and bodies, its types are what the answers decode into. Safe
// for concurrent use.
type apiClient struct {
	base          string
	key           string
	http          *http.Client
	attemptsMax   int           // per call, counting 429/503 retries
	retryAfterMax time.Duration // cap on one Retry-After wait
}

// bodyBytesMax bounds every answer the client reads.
const bodyBytesMax = 4 << 20

// apiError is a non-2xx answer.
type apiError struct {
	Status  int
	Problem client.Problem
}

func (e *apiError) Error() string {
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Problem.Code, e.Problem.Detail)
}

// errCode returns the problem code of err, or "".
func errCode(err error) client.ProblemCode {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Problem.Code
	}
	return ""
}

// generated is the generated client for c's server and key. Making one
// costs a URL parse: far less than the call it makes.
func (c *apiClient) generated() *client.Client {
	g, err := client.NewClient(c.base, client.WithHTTPClient(c.http),
		client.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
			req.Header.Set("Authorization", "Bearer "+c.key)
			req.Header.Set("Accept", "application/json")
			return nil
		}))
	if err != nil {
		panic("BUG: the generated client refused its options: " + err.Error())
	}
	return g
}

// call sends one call through send, waiting out 429 and 503 answers as
// Retry-After asks (capped) up to attemptsMax attempts, and decodes a 2xx
// answer into out when out is set.
func (c *apiClient) call(ctx context.Context, send func(*client.Client) (*http.Response, error), out any) error {
	g := c.generated()
	var err error
	for attempt := 1; ; attempt++ {
		var wait time.Duration
		wait, err = c.once(g, send, out)
		if wait < 0 || attempt >= c.attemptsMax {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last answer: %v)", ctx.Err(), err)
		case <-time.After(wait):
		}
	}
}

// once sends one attempt; wait ≥ 0 asks for a retry after wait.
func (c *apiClient) once(g *client.Client, send func(*client.Client) (*http.Response, error), out any) (wait time.Duration, err error) {
	resp, err := send(g)
	if err != nil {
		return -1, err
	}
	defer resp.Body.Close()
	what := resp.Request.Method + " " + resp.Request.URL.Path
	data, err := io.ReadAll(io.LimitReader(resp.Body, bodyBytesMax))
	if err != nil {
		return -1, fmt.Errorf("%s: reading answer: %w", what, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		ae := &apiError{Status: resp.StatusCode}
		_ = json.Unmarshal(data, &ae.Problem)
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			return retryAfter(resp.Header, time.Now(), 100*time.Millisecond, c.retryAfterMax), ae
		}
		return -1, ae
	}
	if out == nil {
		return -1, nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return -1, fmt.Errorf("%s: cannot decode answer: %w", what, err)
	}
	return -1, nil
}

// date is a YYYY-MM-DD string as the client's date parameters take it.
func date(s string) (openapi_types.Date, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return openapi_types.Date{}, fmt.Errorf("bad date %q: %w", s, err)
	}
	return openapi_types.Date{Time: t}, nil
}

// days lists the free seats per released date of an office for a service.
func (c *apiClient) days(ctx context.Context, office, service, from, to string) ([]client.ListDays200JSONResponseBody_Days, error) {
	f, err := date(from)
	if err != nil {
		return nil, err
	}
	t, err := date(to)
	if err != nil {
		return nil, err
	}
	var out client.ListDays200JSONResponseBody
	err = c.call(ctx, func(g *client.Client) (*http.Response, error) {
		return g.ListDays(ctx, office, &client.ListDaysParams{Service: service, From: &f, To: &t})
	}, &out)
	return out.Days, err
}

// slots lists the free seats per start of one date.
func (c *apiClient) slots(ctx context.Context, office, service, day string) ([]client.ListSlots200JSONResponseBody_Slots, error) {
	d, err := date(day)
	if err != nil {
		return nil, err
	}
	var out client.ListSlots200JSONResponseBody
	err = c.call(ctx, func(g *client.Client) (*http.Response, error) {
		return g.ListSlots(ctx, office, d, &client.ListSlotsParams{Service: service})
	}, &out)
	return out.Slots, err
}

// booking reads one booking on behalf of its applicant.
func (c *apiClient) booking(ctx context.Context, id, applicant string) (client.Booking, error) {
	var b client.Booking
	err := c.call(ctx, func(g *client.Client) (*http.Response, error) {
		return g.GetBooking(ctx, id, &client.GetBookingParams{Applicant: &applicant})
	}, &b)
	return b, err
}

// office reads an office's config (admin).
func (c *apiClient) office(ctx context.Context, id string) (client.OfficeRecord, error) {
	var o client.OfficeRecord
	err := c.call(ctx, func(g *client.Client) (*http.Response, error) {
		return g.GetOffice(ctx, id)
	}, &o)
	return o, err
}

// release opens dates through the given date (admin).
func (c *apiClient) release(ctx context.Context, office, through string) error {
	d, err := date(through)
	if err != nil {
		return err
	}
	return c.call(ctx, func(g *client.Client) (*http.Response, error) {
		return g.Release(ctx, office, &client.ReleaseParams{}, client.ReleaseJSONRequestBody{Through: d})
	}, nil)
}

// lotteryWindow is an office's release lottery window; 0 when off or
// unknown.
func lotteryWindow(o client.OfficeRecord) time.Duration {
	if o.Policy == nil || o.Policy.ReleaseLottery == nil {
		return 0
	}
	d, err := time.ParseDuration(*o.Policy.ReleaseLottery)
	if err != nil {
		return 0
	}
	return d
}
