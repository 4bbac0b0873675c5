package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"slotd/api"
)

// apiClient makes the setup and check calls of a run (not the load
// itself, which goes through vegeta). Safe for concurrent use.
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
	Problem api.Problem
}

func (e *apiError) Error() string {
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Problem.Code, e.Problem.Detail)
}

// errCode returns the problem code of err, or "".
func errCode(err error) string {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Problem.Code
	}
	return ""
}

func (c *apiClient) get(ctx context.Context, path string, q url.Values, out any) error {
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return c.do(ctx, http.MethodGet, path, nil, "", out)
}

func (c *apiClient) post(ctx context.Context, path string, in any, idempotencyKey string, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, path, body, idempotencyKey, out)
}

// do sends one call, waiting out 429 and 503 answers as Retry-After asks
// (capped) up to attemptsMax attempts.
func (c *apiClient) do(ctx context.Context, method, path string, body []byte, idempotencyKey string, out any) error {
	var err error
	for attempt := 1; ; attempt++ {
		var wait time.Duration
		wait, err = c.once(ctx, method, path, body, idempotencyKey, out)
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
func (c *apiClient) once(ctx context.Context, method, path string, body []byte, idempotencyKey string, out any) (wait time.Duration, err error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.base, "/")+path, rd)
	if err != nil {
		return -1, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return -1, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, bodyBytesMax))
	if err != nil {
		return -1, fmt.Errorf("%s %s: reading answer: %w", method, path, err)
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
		return -1, fmt.Errorf("%s %s: cannot decode answer: %w", method, path, err)
	}
	return -1, nil
}

// days lists the free seats per released date of an office for a service.
func (c *apiClient) days(ctx context.Context, office, service, from, to string) ([]api.Day, error) {
	var out struct {
		Days []api.Day `json:"days"`
	}
	q := url.Values{"service": {service}, "from": {from}, "to": {to}}
	err := c.get(ctx, "/v1/offices/"+url.PathEscape(office)+"/days", q, &out)
	return out.Days, err
}

// slots lists the free seats per start of one date.
func (c *apiClient) slots(ctx context.Context, office, service, date string) ([]api.Slot, error) {
	var out struct {
		Slots []api.Slot `json:"slots"`
	}
	q := url.Values{"service": {service}}
	err := c.get(ctx, "/v1/offices/"+url.PathEscape(office)+"/days/"+url.PathEscape(date)+"/slots", q, &out)
	return out.Slots, err
}

// booking reads one booking on behalf of its applicant.
func (c *apiClient) booking(ctx context.Context, id, applicant string) (api.Booking, error) {
	var b api.Booking
	err := c.get(ctx, "/v1/bookings/"+url.PathEscape(id), url.Values{"applicant": {applicant}}, &b)
	return b, err
}

// officeInfo is the part of the office JSON that picks a release date.
type officeInfo struct {
	ID       string              `json:"id"`
	Timezone string              `json:"timezone"`
	Hours    map[string][]string `json:"hours"`
	Closures []string            `json:"closures"`
	Services []struct {
		ID       string   `json:"id"`
		Weekdays []string `json:"weekdays"`
	} `json:"services"`
	Policy officePolicy `json:"policy"`
}

type officePolicy struct {
	ReleaseLottery string `json:"release_lottery"`
}

// lotteryWindow is the release lottery window; 0 when off or unknown.
func (p officePolicy) lotteryWindow() time.Duration {
	d, err := time.ParseDuration(p.ReleaseLottery)
	if err != nil {
		return 0
	}
	return d
}

func (c *apiClient) office(ctx context.Context, id string) (officeInfo, error) {
	var o officeInfo
	err := c.get(ctx, "/v1/offices/"+url.PathEscape(id), nil, &o)
	return o, err
}

// release opens dates through the given date (admin).
func (c *apiClient) release(ctx context.Context, office, through string) error {
	return c.post(ctx, "/v1/offices/"+url.PathEscape(office)+"/release", map[string]string{"through": through}, "", nil)
}
