package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

const (
	recordingFile = "prometheus/recording.yml"
	alertsFile    = "prometheus/alerts.yml"
	configFile    = "prometheus/prometheus.yml"
	ruleTestsGlob = "prometheus/tests/*.yml"
	runbookFile   = "../docs/runbook.md"
	// runbookURLPrefix is how every runbook_url starts; the anchor after it
	// is the alert name in lower case (GitHub's heading anchors).
	runbookURLPrefix = "docs/runbook.md#"
)

// promtool returns the path of promtool, or skips the test when it is
// missing; under CI (env CI set) a missing promtool fails instead, so a CI
// run can never pass without having run the rule tests.
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err == nil {
		return path
	}
	const msg = "promtool not found on PATH: install the Debian package prometheus " +
		"(apt-get install prometheus), which provides /usr/bin/promtool"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func runPromtool(t *testing.T, args ...string) string {
	t.Helper()
	out, err := execOutput(promtool(t), args...)
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func execOutput(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

func TestPromtoolCheckRules(t *testing.T) {
	t.Log(runPromtool(t, "check", "rules", recordingFile, alertsFile))
	// The example configuration loads both rule files by relative path.
	t.Log(runPromtool(t, "check", "config", configFile))
}

func TestPromtoolTestRules(t *testing.T) {
	files, err := filepath.Glob(ruleTestsGlob)
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule tests match %s (%v)", ruleTestsGlob, err)
	}
	t.Log(runPromtool(t, append([]string{"test", "rules"}, files...)...))
}

// alertRule is what the tests need of an alerting rule.
type alertRule struct {
	name        string
	labels      map[string]string
	annotations map[string]string
}

// parseAlerts reads the alerting rules of a rule file. It is a line
// scanner for the shape alerts.yml is written in (promtool check rules
// validates the YAML itself): "- alert: Name", then "labels:" and
// "annotations:" maps whose values may be folded onto deeper lines.
func parseAlerts(t *testing.T, path string) []alertRule {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		rules        []alertRule
		section      map[string]string // labels or annotations being read
		sectionDepth int               // indentation of the "labels:" line
		entryDepth   int               // indentation of the map's keys
		lastKey      string
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		depth := len(line) - len(strings.TrimLeft(line, " "))
		if section != nil && depth <= sectionDepth {
			section = nil
		}
		if name, ok := strings.CutPrefix(trimmed, "- alert:"); ok {
			rules = append(rules, alertRule{name: strings.TrimSpace(name),
				labels: map[string]string{}, annotations: map[string]string{}})
			continue
		}
		if len(rules) == 0 {
			continue
		}
		cur := &rules[len(rules)-1]
		switch {
		case trimmed == "labels:":
			section, sectionDepth, entryDepth = cur.labels, depth, 0
		case trimmed == "annotations:":
			section, sectionDepth, entryDepth = cur.annotations, depth, 0
		case section != nil:
			if entryDepth == 0 {
				entryDepth = depth
			}
			if depth > entryDepth { // a folded value's continuation
				section[lastKey] = strings.TrimSpace(section[lastKey] + " " + trimmed)
				continue
			}
			key, value, _ := strings.Cut(trimmed, ":")
			value = strings.Trim(strings.TrimSpace(value), `"`)
			if value == ">-" || value == ">" || value == "|" {
				value = ""
			}
			section[key], lastKey = value, key
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rules) == 0 {
		t.Fatalf("%s: no alerting rules found", path)
	}
	return rules
}

// githubAnchor is the anchor GitHub gives a Markdown heading.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

func runbookAnchors(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(runbookFile)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "#") {
			anchors[githubAnchor(strings.TrimLeft(line, "#"))] = true
		}
	}
	return anchors
}

// TestAlertsAreComplete: every alert has a severity SREs route on, the
// annotations a responder reads, and a runbook section that exists.
func TestAlertsAreComplete(t *testing.T) {
	anchors := runbookAnchors(t)
	seen := map[string]bool{}
	for _, a := range parseAlerts(t, alertsFile) {
		if seen[a.name] {
			t.Errorf("%s: defined twice", a.name)
		}
		seen[a.name] = true
		if s := a.labels["severity"]; s != "page" && s != "ticket" {
			t.Errorf("%s: severity %q, want page or ticket", a.name, s)
		}
		for _, k := range []string{"summary", "description", "runbook_url"} {
			if a.annotations[k] == "" {
				t.Errorf("%s: no %s annotation", a.name, k)
			}
		}
		url := a.annotations["runbook_url"]
		if want := runbookURLPrefix + strings.ToLower(a.name); url != want {
			t.Errorf("%s: runbook_url %q, want %q", a.name, url, want)
		}
		if anchor, ok := strings.CutPrefix(url, runbookURLPrefix); ok && !anchors[anchor] {
			t.Errorf("%s: %s has no heading with anchor #%s", a.name, runbookFile, anchor)
		}
	}
}

// ruleTestCases reads, per alert name, whether the promtool unit tests
// expect it to fire somewhere and not to fire somewhere.
func ruleTestCases(t *testing.T) (firing, silent map[string]bool) {
	t.Helper()
	files, err := filepath.Glob(ruleTestsGlob)
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule tests match %s (%v)", ruleTestsGlob, err)
	}
	firing, silent = map[string]bool{}, map[string]bool{}
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		current := ""
		for _, line := range strings.Split(string(data), "\n") {
			trimmed := strings.TrimSpace(line)
			if name, ok := strings.CutPrefix(trimmed, "alertname:"); ok {
				current = strings.TrimSpace(name)
				continue
			}
			if current == "" || !strings.HasPrefix(trimmed, "exp_alerts:") {
				continue
			}
			if strings.TrimSpace(strings.TrimPrefix(trimmed, "exp_alerts:")) == "[]" {
				silent[current] = true
			} else {
				firing[current] = true
			}
			current = ""
		}
	}
	return firing, silent
}

// TestEveryAlertIsUnitTested: each alert has a promtool case in which it
// fires, and each page a case in which it must not.
func TestEveryAlertIsUnitTested(t *testing.T) {
	firing, silent := ruleTestCases(t)
	defined := map[string]bool{}
	for _, a := range parseAlerts(t, alertsFile) {
		defined[a.name] = true
		if !firing[a.name] {
			t.Errorf("%s: no unit test in %s expects it to fire", a.name, ruleTestsGlob)
		}
		if a.labels["severity"] == "page" && !silent[a.name] {
			t.Errorf("%s: a page without a unit test that expects it not to fire", a.name)
		}
	}
	for name := range firing {
		if !defined[name] {
			t.Errorf("unit tests expect alert %s, which %s does not define", name, alertsFile)
		}
	}
}

var (
	// exportedNameRe matches the metric names slotd exports: its own and
	// client_golang's Go and process collectors.
	exportedNameRe = regexp.MustCompile(`\b(?:slotd|go|process)_[a-z0-9_]+`)
	// recordedNameRe matches recording-rule names (level:metric:operations).
	recordedNameRe = regexp.MustCompile(`\bslotd:[a-z0-9_:]+`)
	recordRe       = regexp.MustCompile(`(?m)^\s*- record:\s*(\S+)\s*$`)
)

// recordedNames returns the recording rules recording.yml defines.
func recordedNames(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(recordingFile)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range recordRe.FindAllStringSubmatch(string(data), -1) {
		names[m[1]] = true
	}
	return names
}

// referencedNames returns the sorted metric and recording-rule names in
// text.
func referencedNames(text string) (exported, recorded []string) {
	uniq := func(xs []string) []string {
		sort.Strings(xs)
		out := xs[:0]
		for i, x := range xs {
			if i == 0 || x != xs[i-1] {
				out = append(out, x)
			}
		}
		return out
	}
	return uniq(exportedNameRe.FindAllString(text, -1)), uniq(recordedNameRe.FindAllString(text, -1))
}

// rulesText is the text of both rule files, from which metric names are
// taken (expressions and annotations alike).
func rulesText(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, path := range []string{recordingFile, alertsFile} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
	}
	return b.String()
}

func TestRecordingRulesUsedAreDefined(t *testing.T) {
	defined := recordedNames(t)
	_, used := referencedNames(rulesText(t) + dashboardExprText(t))
	for _, name := range used {
		if !defined[name] {
			t.Errorf("recording rule %s is used but %s does not define it", name, recordingFile)
		}
	}
}
