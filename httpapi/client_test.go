package httpapi

import (
	"context"
	"net/http"
	"testing"

	"slotd/api"
	"slotd/client"
)

// TestGeneratedClient: the client generated from docs/openapi.yaml
// (package client) talks to the server: it reads offices, holds and
// confirms a booking, reads it back and the events it made, and decodes
// a refusal into its problem. Its exchanges go through the live spec
// check too.
func TestGeneratedClient(t *testing.T) {
	e := newEnv(t, nil)
	bearer := func(key string) client.RequestEditorFn {
		return func(_ context.Context, req *http.Request) error {
			req.Header.Set("Authorization", "Bearer "+key)
			return nil
		}
	}
	c, err := client.NewClientWithResponses(e.url, client.WithHTTPClient(e.client), client.WithRequestEditorFn(bearer(keyPortal)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	offices, err := c.ListOfficesWithResponse(ctx, &client.ListOfficesParams{})
	if err != nil || offices.JSON200 == nil || len(offices.JSON200.Offices) != 2 || offices.JSON200.Offices[0].Id != "office-a" {
		t.Fatalf("offices: %v %s", err, offices.Body)
	}

	applicant, start := "a-client", at(1, 10, 0)
	held, err := c.HoldWithResponse(ctx, &client.HoldParams{},
		client.HoldJSONRequestBody{Office: "office-a", Service: "patent", Applicant: &applicant, Start: &start})
	if err != nil || held.JSON201 == nil || held.JSON201.Status != client.Held || held.JSON201.HoldExpiresAt == nil ||
		!held.JSON201.Start.Equal(start) {
		t.Fatalf("hold: %v %s", err, held.Body)
	}
	id := held.JSON201.Id
	confirmed, err := c.ConfirmWithResponse(ctx, id, &client.ConfirmParams{}, client.ConfirmJSONRequestBody{Applicant: &applicant})
	if err != nil || confirmed.JSON200 == nil || confirmed.JSON200.Status != client.Confirmed || len(confirmed.JSON200.History) != 2 {
		t.Fatalf("confirm: %v %s", err, confirmed.Body)
	}
	got, err := c.GetBookingWithResponse(ctx, id, &client.GetBookingParams{Applicant: &applicant})
	if err != nil || got.JSON200 == nil || got.JSON200.Number != confirmed.JSON200.Number {
		t.Fatalf("get: %v %s", err, got.Body)
	}

	// The start's second window goes to another applicant; a third is
	// refused with 409 slot_taken and the nearest free starts.
	hold := func(applicant string) *client.HoldResponse {
		t.Helper()
		r, err := c.HoldWithResponse(ctx, &client.HoldParams{},
			client.HoldJSONRequestBody{Office: "office-a", Service: "patent", Applicant: &applicant, Start: &start})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := hold("a-client-2"); r.JSON201 == nil {
		t.Fatalf("second hold: %s", r.Body)
	}
	r := hold("a-client-3")
	if p := r.ApplicationproblemJSON409; p == nil || p.Code != api.CodeSlotTaken || p.Alternatives == nil || len(*p.Alternatives) == 0 {
		t.Fatalf("third hold: %d %s", r.StatusCode(), r.Body)
	}

	events, err := c.ListEventsWithResponse(ctx, &client.ListEventsParams{})
	if err != nil || events.JSON200 == nil || len(events.JSON200.Events) < 2 {
		t.Fatalf("events: %v %s", err, events.Body)
	}
	ev := events.JSON200.Events[0]
	if ev.Type != client.BookingHeld || ev.Booking == nil || ev.Booking.Id != id {
		t.Fatalf("first event: %+v", ev)
	}
}
