// Package loadtest replays booking load against a slotd server with vegeta
// (github.com/tsenart/vegeta/v12/lib) and checks the server's invariants
// afterwards. Run(ctx, Config) is the whole API; cmd/slotload is its
// command line. The package owns no globals.
//
// # Scenarios (one file each)
//
//   - rush.go: a date is released at a chosen instant; N applicants arrive
//     in an open-model spike around it and walk the flow.
//   - peakday.go: arrivals follow a per-minute rate profile of a whole day
//     (ParseProfile; testdata holds a migration centre's peak day),
//     compressed in time. profileimport.go makes such profiles of real
//     days: from a Prometheus range query (ProfileFromPrometheus) or from
//     slotd's access logs with their sampling undone (AccessLog).
//   - mixed.go: a constant rate of reads, holds, confirms, cancels and
//     reschedules in configurable proportions.
//   - botrush.go: bots send BotFactor times more hold requests than humans
//     inside the release-lottery window; the report compares the bots'
//     share of seats with their share of applicants.
//
// # Keeping the open model honest
//
// Each run is two vegeta attacks. The arrival attack is paced by a
// ProfilePacer: new applicants arrive on the profile's schedule whatever
// the server does, so a slow server faces a growing queue, as in life (a
// closed loop of N virtual users would slow down with the server and hide
// exactly the overload a rush causes). An applicant's next step cannot be
// sent before its previous answer arrived, though: a person confirms the
// hold they got. Those follow-ups go through a second attack whose Pacer
// is the follow-up queue (queue.go): the result handler queues the next
// request with its think time, and Pace lets a tick through only when one
// is due. A blocking Targeter was rejected because vegeta stamps a
// result's start before calling the Targeter, so the wait would count as
// server latency; running each step as its own attack after the previous
// one ended was rejected because it turns one rush into several separate
// ones and loses the think times between steps. Every request carries its
// step and applicant in the URL fragment, which HTTP clients never send, so
// each answer maps back to its applicant and to its step's report.
//
// # The wire
//
// The load speaks the API through the client generated from its spec
// (package client): every body is one of the client's request types
// marshalled once per request, every answer is read into the client's
// answer types, and the setup and check calls (client.go) are the
// client's requests. The targets themselves are vegeta's, not the
// client's http.Requests: vegeta builds its own request from a target,
// and a second one per request would only cost.
//
// Bounds: arrivals stop at Applicants or at the profile's end or Duration;
// each applicant polls at most PollsMax times and retries at most
// RetriesMax times; follow-ups stop DrainTimeout after the last arrival;
// the check is bounded by CheckTimeout; requests in flight by WorkersMax.
//
// # Output
//
// Per step (days, slots, hold, confirm, cancel, reschedule) and for all
// steps: vegeta's text and JSON reports and HDR histogram data; plot.html
// with one series per step (vegeta's lib/plot); plot.png, a picture of the
// run that needs no browser drawn with gonum/plot (chart.go: latency of
// every answer coloured by its class, above the answers per second of each
// class, with the release and the lottery draw marked; bots apart from
// people when there are bots); summary.txt and
// summary.json with the outcome of every applicant (booked, abandoned,
// slot_taken, sold_out, rate_limited, shed, error, …), the class of every
// answer per step, the fairness verdict and the invariant check
// (invariant.go, C1–C3); and results.bin, every result in vegeta's own
// encoding, which ReportResults reads back to the same figures and
// MergeResults joins with other generators' (results.go).
package loadtest
