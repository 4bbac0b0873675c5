package httpapi

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A service's documents and translated names: put with the office, shown
// by the office JSON and the ticket, whose service name follows the
// request's Accept-Language: the first primary tag in q order the service
// has a name in, else its name.
func TestServiceInfoOnTicket(t *testing.T) {
	e := newEnv(t, nil)
	cfg := testOffice("office-a")
	cfg.Services[0].Documents = []string{"паспорт", "миграционная карта"}
	cfg.Services[0].Names = map[string]string{"ru": "Патент на работу", "en": "Work patent"}
	body, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want(t, e.call("PUT", "/v1/offices/office-a", keyAdmin, string(body)), 200, "")
	r := e.get("/v1/offices/office-a", keyPortal)
	want(t, r, 200, "")
	var office struct {
		Services []struct {
			ID        string            `json:"id"`
			Documents []string          `json:"documents"`
			Names     map[string]string `json:"names"`
		} `json:"services"`
	}
	if err := json.Unmarshal(r.body, &office); err != nil || len(office.Services) == 0 ||
		!slices.Equal(office.Services[0].Documents, cfg.Services[0].Documents) || office.Services[0].Names["en"] != "Work patent" {
		t.Fatalf("office JSON lacks the service's documents or names (%v): %s", err, r.body)
	}

	id := e.mustHold("office-a", "patent", "a-1", at(1, 10, 0), true)
	ticket := func(acceptLanguage string) (name string, documents []string) {
		t.Helper()
		r := e.call("GET", "/v1/bookings/"+id+"/ticket?applicant=a-1", keyPortal, "", "Accept-Language", acceptLanguage)
		want(t, r, 200, "")
		var v struct {
			Service     string   `json:"service"`
			ServiceName string   `json:"service_name"`
			Documents   []string `json:"documents"`
		}
		if err := json.Unmarshal(r.body, &v); err != nil || v.Service != "patent" {
			t.Fatalf("ticket %s: %v", r.body, err)
		}
		return v.ServiceName, v.Documents
	}
	for header, wantName := range map[string]string{
		"":                            "Патент",
		"en":                          "Work patent",
		"en-GB,en;q=0.9":              "Work patent",
		"ru-RU,ru;q=0.9,en;q=0.8":     "Патент на работу",
		"de;q=1, en;q=0.5, ru;q=0.7":  "Патент на работу",
		"ru;q=0, en;q=0.1":            "Work patent",
		"de, fr;q=0.8, *;q=0.1":       "Патент",
		"EN":                          "Work patent",
		",;q=,en;q=abc":               "Work patent",
		"fr;q=0.9, en;q=0.9, ru;q=.9": "Work patent",
	} {
		if name, docs := ticket(header); name != wantName || !slices.Equal(docs, cfg.Services[0].Documents) {
			t.Errorf("Accept-Language %q: service_name %q, documents %q; want %q, %q", header, name, docs, wantName, cfg.Services[0].Documents)
		}
	}
	// A service without documents lists none.
	other := e.mustHold("office-a", "rvp", "a-2", at(1, 11, 0), true)
	r = e.get("/v1/bookings/"+other+"/ticket?applicant=a-2", keyPortal)
	want(t, r, 200, "")
	if !strings.Contains(string(r.body), `"service_name":"РВП","documents":[]`) {
		t.Fatalf("ticket of a service without documents or names: %s", r.body)
	}

	r = e.call("GET", "/v1/bookings/"+id+"/ticket.pdf?applicant=a-1", keyPortal, "", "Accept-Language", "en-US,en;q=0.9")
	want(t, r, 200, "")
	pdftotext, err := exec.LookPath("pdftotext")
	if err != nil {
		t.Log("pdftotext (Debian package poppler-utils) not found: the text of the PDF is not read back")
		return
	}
	path := filepath.Join(t.TempDir(), "ticket.pdf")
	if err := os.WriteFile(path, r.body, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(pdftotext, path, "-").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"Work patent", "Документы", "паспорт", "миграционная карта"} {
		if !strings.Contains(string(out), s) {
			t.Fatalf("ticket text lacks %q:\n%s", s, out)
		}
	}
}
