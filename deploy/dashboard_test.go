package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const dashboardFile = "grafana/slotd.json"

// dashboard is the part of the Grafana dashboard model the tests read.
type dashboard struct {
	UID           string                  `json:"uid"`
	Title         string                  `json:"title"`
	SchemaVersion int                     `json:"schemaVersion"`
	Panels        []panel                 `json:"panels"`
	Annotations   struct{ List []target } `json:"annotations"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource *datasource     `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *datasource              `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []target                 `json:"targets"`
	Panels     []panel                  `json:"panels"` // of a collapsed row
}

type target struct {
	Datasource *datasource `json:"datasource"`
	Expr       string      `json:"expr"`
	Name       string      `json:"name"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// allPanels flattens rows, collapsed or not.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// dashboardExprs returns every PromQL expression of the dashboard:
// panel targets, annotations and variable queries.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	d := loadDashboard(t)
	var exprs []string
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			exprs = append(exprs, a.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			exprs = append(exprs, v.Definition)
		}
	}
	return exprs
}

func dashboardExprText(t *testing.T) string {
	return strings.Join(dashboardExprs(t), "\n")
}

// TestDashboardShape: the dashboard imports cleanly into Grafana 10/11 and
// is usable on any Prometheus: the data source is a variable, so is the
// office, and the rows are the ones the rush is read by.
func TestDashboardShape(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: both are needed for provisioning", d.UID, d.Title)
	}
	if d.SchemaVersion < 39 {
		t.Errorf("schemaVersion %d, want at least 39", d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		q := strings.Trim(string(v.Query), `"`)
		if v.Type == "query" {
			q = v.Definition
		}
		vars[v.Name] = v.Type + " " + q
		if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${datasource}") {
			t.Errorf("variable %s does not query ${datasource}", v.Name)
		}
	}
	if got, want := vars["datasource"], "datasource prometheus"; got != want {
		t.Errorf("variable datasource: %q, want %q", got, want)
	}
	if got, want := vars["office"], "query label_values(slotd_office_free_seats, office)"; got != want {
		t.Errorf("variable office: %q, want %q", got, want)
	}

	var rows []string
	ids := map[int]string{}
	queries := 0
	for _, p := range allPanels(d.Panels) {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panel id %d used by %q and %q", p.ID, prev, p.Title)
		}
		ids[p.ID] = p.Title
		if p.Title == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
		if g := p.GridPos; g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		if p.Type == "row" {
			rows = append(rows, p.Title)
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use ${datasource}", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
		for _, tg := range p.Targets {
			queries++
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: a query does not use ${datasource}", p.Title)
			}
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q: empty query", p.Title)
			}
		}
	}
	if got, want := strings.Join(rows, ","), "Rush,Latency,Journal,Engine,Runtime,Cluster"; got != want {
		t.Errorf("rows %s, want %s", got, want)
	}
	t.Logf("%d panels, %d queries", len(ids)-len(rows), queries)
}

// grafanaVars are the dashboard's variables and Grafana's built-in
// intervals, replaced by plain values so that promtool can parse the
// queries.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "1m", "$__interval", "1m", "$__range", "1h",
	"$instance", ".*", "$office", ".*",
)

// TestDashboardQueriesParse checks every dashboard query with promtool's
// PromQL parser, by writing them as recording rules to a scratch file.
func TestDashboardQueriesParse(t *testing.T) {
	tool := promtool(t)
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	for _, e := range dashboardExprs(t) {
		if strings.HasPrefix(e, "label_values(") {
			continue // a Grafana function, not PromQL
		}
		n++
		js, _ := json.Marshal(grafanaVars.Replace(e)) // a JSON string is a YAML string
		fmt.Fprintf(&b, "      - record: dashboard:query_%d\n        expr: %s\n", n, js)
	}
	path := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := execOutput(tool, "check", "rules", path); err != nil {
		t.Fatalf("dashboard queries do not parse: %v\n%s", err, out)
	}
	t.Logf("%d dashboard queries parse", n)
}
