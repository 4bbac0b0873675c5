// Package deploy holds what SREs run slotd with: Prometheus recording
// rules and alerts (prometheus/), their promtool unit tests
// (prometheus/tests/), the Grafana dashboard (grafana/slotd.json), the
// Compose file (compose.yaml) for the image the root Dockerfile builds,
// and the systemd unit (slotd.service). docs/runbook.md has a section
// for every alert.
//
// The package has no code. Its tests check the artefacts like code:
//
//   - promtool check rules and promtool test rules, so every alert is
//     syntactically valid and fires on the series it is meant for (and, for
//     the burn-rate pages, not on those it is not);
//   - every alert carries severity, summary, description and a runbook_url
//     whose anchor exists in the runbook, and has a firing unit test;
//   - the dashboard is well formed and its queries parse as PromQL;
//   - the real slotd binary, after some traffic, exports every metric name
//     the rules and the dashboard use, and its /metrics passes promlint;
//   - where Docker is installed, the real image: built with make image,
//     run on a network of its own, booked through, stopped; and Compose
//     accepts compose.yaml;
//   - the systemd unit names only slotd's flags, and systemd-analyze
//     accepts it where installed.
//
// The promtool tests need the Debian package prometheus; without it they
// skip, or fail when the environment variable CI is set.
package deploy
