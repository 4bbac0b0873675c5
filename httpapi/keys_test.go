package httpapi

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"slotd/api"
	"slotd/internal/slotdtest/testtime"
)

// Secrets of the rotation tests: two secrets of the key portal-r.
const (
	secretOld = "rotate-old-0123456789"
	secretNew = "rotate-new-0123456789"
)

// keysFile is a keys file whose content a test replaces, read by the
// server's reloads as slotd reads its file. Safe for concurrent use.
type keysFile struct {
	mu   sync.Mutex
	data string
}

func (f *keysFile) set(data string) { f.mu.Lock(); f.data = data; f.mu.Unlock() }
func (f *keysFile) read() ([]Key, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return LoadKeys([]byte(f.data))
}

// rotationKeys is a keys file of testKeys' portal-a and the key portal-r
// with the secrets given, and extra fields of portal-r (",…" or "").
func rotationKeys(extra string, secrets ...string) string {
	field := `"key":"` + secrets[0] + `"`
	if len(secrets) > 1 {
		field = `"keys":["` + strings.Join(secrets, `","`) + `"]`
	}
	return `[{"key":"` + keyPortal + `","name":"portal-a","scopes":["portal"],"offices":["*"]},
	         {` + field + `,"name":"portal-r","scopes":["portal"],"offices":["*"]` + extra + `}]`
}

// newRotationEnv starts a server on the keys of file, which it reloads from.
func newRotationEnv(t *testing.T, file *keysFile, mutate func(*Config)) *env {
	t.Helper()
	return newEnv(t, func(c *Config) {
		keys, err := file.read()
		if err != nil {
			t.Fatal(err)
		}
		c.Keys, c.KeysSource, c.KeysFile = keys, file.read, "test-keys.json"
		if mutate != nil {
			mutate(c)
		}
	})
}

// The keys file's two ways to give a key's secrets, and what it refuses.
// A file that is not an array says so as a file, not as a request body.
func TestLoadKeysSecretsAndRates(t *testing.T) {
	keys, err := LoadKeys([]byte(rotationKeys(`,"rate_per_second":50,"rate_burst":80`, secretOld, secretNew)))
	if err != nil {
		t.Fatal(err)
	}
	if k := keys[1]; k.Key != "" || len(k.Keys) != 2 || k.RatePerSecond != 50 || k.RateBurst != 80 {
		t.Fatalf("portal-r read as %+v", k)
	}
	bad := func(data, wantText string) {
		t.Helper()
		_, err := LoadKeys([]byte(data))
		if err == nil || !strings.Contains(err.Error(), wantText) {
			t.Fatalf("LoadKeys(%s): %v, want an error with %q", data, err, wantText)
		}
		if strings.Contains(err.Error(), "body") {
			t.Fatalf("LoadKeys(%s): %q speaks of a request body", data, err)
		}
	}
	entry := func(fields string) string {
		return `[{"name":"a","scopes":["portal"],"offices":["*"]` + fields + `}]`
	}
	bad(entry(``), `"key"`)
	bad(entry(`,"key":"k-0123456789abcdef","keys":["k-0123456789abcdeg"]`), `not both`)
	bad(entry(`,"keys":[]`), `"key"`)
	bad(entry(`,"keys":["k-0123456789abcdef","short"]`), `keys[0] (a): secret 2 must be 16..256 bytes`)
	bad(entry(`,"keys":["k-0123456789abcdef","k-0123456789abcdef"]`), "listed twice")
	bad(entry(`,"keys":["k-1-0123456789abcdef","k-2-0123456789abcdef","k-3-0123456789abcdef","k-4-0123456789abcdef","k-5-0123456789abcdef"]`), "at most 4 secrets, 5 given")
	bad(`[{"keys":["k-0123456789abcdef"],"name":"a","scopes":["portal"],"offices":["*"]},
	      {"key":"k-0123456789abcdef","name":"b","scopes":["portal"],"offices":["*"]}]`, "listed twice")
	bad(entry(`,"key":"k-0123456789abcdef","rate_per_second":-1`), "rate_per_second")
	bad(entry(`,"key":"k-0123456789abcdef","rate_per_second":2e9`), "rate_per_second")
	bad(entry(`,"key":"k-0123456789abcdef","rate_burst":-1`), "rate_burst")
	bad(`{"key":"k-0123456789abcdef","name":"a","scopes":["portal"],"offices":["*"]}`, `the file must be a JSON array of keys {"name", "key" or "keys", "namespace", "scopes", "offices", "rate_per_second", "rate_burst"}, got JSON object`)
	bad(`[{"key":"k-0123456789abcdef","name":"a","scopes":["portal"],"offices":["*"]}, "b"]`, "keys[1]: the entry must be a JSON object, got JSON string")
	bad(`[{"key":"k-0123456789abcdef","name":"a","scopes":"portal","offices":["*"]}]`, `keys[0]: field "scopes" must be an array, got JSON string`)
	bad("[\n  {\"key\": \"k-0123456789abcdef\",\n   \"name\": \"a\" \"scopes\": []}]", "line 3, column 16")
	bad(`[{"key":"k-0123456789abcdef","name":"a","scopes":["portal"],"offices":["*"]}`, "the file ends early")
}

// Every secret of a key is the same key: one name (the actor of its
// changes), one namespace, one Idempotency-Key namespace, one rate bucket.
func TestKeySecretsAreOneKey(t *testing.T) {
	file := &keysFile{data: rotationKeys(`,"rate_per_second":1,"rate_burst":4`, secretOld, secretNew)}
	e := newRotationEnv(t, file, nil)
	hold := holdJSON("office-a", "patent", "alice", at(1, 9, 0))
	first := e.post("/v1/bookings", secretOld, hold, "Idempotency-Key", "h-1")
	want(t, first, 201, "")
	again := e.post("/v1/bookings", secretNew, hold, "Idempotency-Key", "h-1")
	want(t, again, 201, "")
	if !jsonEq(first.body, again.body) {
		t.Fatalf("the same Idempotency-Key through the other secret answered anew:\n%s\n%s", first.body, again.body)
	}
	id := first.str(t, "id")
	r := e.get("/v1/bookings/"+id+"?applicant=alice", secretNew)
	want(t, r, 200, "")
	if got := r.obj(t)["history"].([]any)[0].(map[string]any)["actor"]; got != "portal-r" {
		t.Fatalf("the hold's actor is %v, want the key's name portal-r", got)
	}
	// Four tokens in all (the clock stands still): three are spent, the
	// hold, its repeat and the read; this takes the last.
	want(t, e.get("/v1/offices", secretOld), 200, "")
	r = e.get("/v1/offices", secretNew)
	want(t, r, 429, api.CodeRateLimited)
	if !strings.Contains(r.str(t, "detail"), "rate of 1 requests per second") {
		t.Fatalf("the refusal does not give the key's own rate: %s", r.body)
	}
	want(t, e.get("/v1/offices", secretOld), 429, api.CodeRateLimited)
	// The key's own rate leaves the others' at the default.
	for range 10 {
		want(t, e.get("/v1/offices", keyPortal), 200, "")
	}
	// The access log tells the secrets of a key with several apart, by
	// their place in its list, so that a rotation's end can be seen.
	secrets := map[string][]any{}
	for _, l := range e.logs.FilterMessage("request").All() {
		m := l.ContextMap()
		secrets[m["key"].(string)] = append(secrets[m["key"].(string)], m["secret"])
	}
	if got := fmt.Sprint(secrets["portal-r"]); got != "[1 2 2 1 2 1]" {
		t.Fatalf("the access log's secrets of portal-r: %s", got)
	}
	if got := fmt.Sprint(secrets["portal-a"][0]); got != "<nil>" {
		t.Fatalf("a key of one secret logs secret %s", got)
	}
}

// A rotation: the second secret is added by a reload, both work, then
// the first is removed by another and answers 401, while the key's
// bucket carries over (a reload is no way to refill it).
func TestReloadKeysRotates(t *testing.T) {
	file := &keysFile{data: rotationKeys(`,"rate_per_second":1,"rate_burst":3`, secretOld)}
	e := newRotationEnv(t, file, nil)
	want(t, e.get("/v1/offices", secretOld), 200, "")
	want(t, e.get("/v1/offices", secretNew), 401, api.CodeUnauthorized)

	file.set(rotationKeys(`,"rate_per_second":1,"rate_burst":3`, secretOld, secretNew))
	if err := e.srv.ReloadKeys(); err != nil {
		t.Fatal(err)
	}
	want(t, e.get("/v1/offices", secretOld), 200, "")
	want(t, e.get("/v1/offices", secretNew), 200, "")
	want(t, e.get("/v1/offices", secretNew), 429, api.CodeRateLimited)

	file.set(rotationKeys(`,"rate_per_second":1,"rate_burst":3`, secretNew))
	if err := e.srv.ReloadKeys(); err != nil {
		t.Fatal(err)
	}
	want(t, e.get("/v1/offices", secretOld), 401, api.CodeUnauthorized)
	want(t, e.get("/v1/offices", secretNew), 429, api.CodeRateLimited)
	e.clock.Add(time.Second)
	want(t, e.get("/v1/offices", secretNew), 200, "")

	// A new rate takes effect at once, on the same bucket.
	file.set(rotationKeys(`,"rate_per_second":1000`, secretNew))
	if err := e.srv.ReloadKeys(); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(time.Second)
	for range 20 {
		want(t, e.get("/v1/offices", secretNew), 200, "")
	}
	if n := len(e.logs.FilterMessage("keys reloaded").All()); n != 3 {
		t.Fatalf("%d \"keys reloaded\" log lines, want 3", n)
	}
}

// A reload that fails leaves the keys in force as they were, with one
// log line naming the file and the problem; so does one that would move
// a key to another namespace.
func TestReloadKeysRefused(t *testing.T) {
	file := &keysFile{data: rotationKeys(``, secretOld)}
	e := newRotationEnv(t, file, nil)
	refused := func(data, wantText string) {
		t.Helper()
		file.set(data)
		e.logs.TakeAll()
		err := e.srv.ReloadKeys()
		if err == nil || !strings.Contains(err.Error(), wantText) {
			t.Fatalf("reload of %s: %v, want an error with %q", data, err, wantText)
		}
		lines := e.logs.FilterMessage("keys not reloaded; the previous keys stay in force").All()
		if len(lines) != 1 || len(e.logs.All()) != 1 {
			t.Fatalf("log after a refused reload: %+v", e.logs.All())
		}
		if msg := fmt.Sprint(lines[0].ContextMap()["error"]); !strings.Contains(msg, "test-keys.json") || !strings.Contains(msg, wantText) {
			t.Fatalf("the log line's error %q does not name the file and %q", msg, wantText)
		}
		want(t, e.get("/v1/offices", secretOld), 200, "")
		want(t, e.get("/v1/offices", secretNew), 401, api.CodeUnauthorized)
	}
	refused(`[{"key":`, "the file ends early")
	refused(`{}`, "the file must be a JSON array of keys")
	refused(rotationKeys(``, secretNew, "short"), "secret 2 must be")
	refused(rotationKeys(`,"namespace":"portal-a"`, secretOld, secretNew), `namespace would change from "portal-r" to "portal-a"`)
	// The same namespace spelled out is no change.
	file.set(rotationKeys(`,"namespace":"portal-r"`, secretOld, secretNew))
	if err := e.srv.ReloadKeys(); err != nil {
		t.Fatal(err)
	}
	want(t, e.get("/v1/offices", secretNew), 200, "")
}

// A server without a source of keys refuses reloads, and says why.
func TestReloadKeysWithoutSource(t *testing.T) {
	e := newEnv(t, nil)
	if err := e.srv.ReloadKeys(); !errors.Is(err, ErrNoKeysSource) {
		t.Fatalf("reload without a source: %v", err)
	}
	want(t, e.get("/v1/offices", keyPortal), 200, "")
}

// POST /admin/reload-keys on the admin listener reloads; a refused reload
// answers 422 with the reason, and the old keys stay.
func TestAdminReloadKeys(t *testing.T) {
	file := &keysFile{data: rotationKeys(``, secretOld)}
	e := newRotationEnv(t, file, nil)
	admin := httptest.NewServer(e.srv.AdminHandler())
	defer admin.Close()
	post := func() (int, string) {
		t.Helper()
		res, err := http.Post(admin.URL+"/admin/reload-keys", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var b strings.Builder
		_, _ = bufio.NewReader(res.Body).WriteTo(&b)
		return res.StatusCode, b.String()
	}
	file.set(rotationKeys(``, secretOld, secretNew))
	if code, body := post(); code != 200 || !strings.Contains(body, "3 secrets") {
		t.Fatalf("reload: %d %q", code, body)
	}
	want(t, e.get("/v1/offices", secretNew), 200, "")
	file.set(`[]`)
	if code, body := post(); code != 422 || !strings.Contains(body, "test-keys.json") || !strings.Contains(body, "at least one key") {
		t.Fatalf("refused reload: %d %q", code, body)
	}
	want(t, e.get("/v1/offices", secretNew), 200, "")
	res, err := http.Get(admin.URL + "/admin/reload-keys")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 405 || res.Header.Get("Allow") != "POST" {
		t.Fatalf("GET /admin/reload-keys: %d Allow %q", res.StatusCode, res.Header.Get("Allow"))
	}
}

// A reload drops no connection and no request: a long-poll made with a
// secret the reload removes finishes with its answer, and a keep-alive
// connection carries the next request under the new keys.
func TestReloadKeysKeepsConnections(t *testing.T) {
	file := &keysFile{data: rotationKeys(``, secretOld)}
	e := newRotationEnv(t, file, nil)
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	onConn := func(secret string) int {
		t.Helper()
		_ = conn.SetDeadline(time.Now().Add(waitMax))
		fmt.Fprintf(conn, "GET /v1/offices HTTP/1.1\r\nHost: slotd\r\nAuthorization: Bearer %s\r\n\r\n", secret)
		res, err := http.ReadResponse(rd, nil)
		if err != nil {
			t.Fatalf("the kept-alive connection: %v", err)
		}
		_, _ = rd.Discard(int(res.ContentLength))
		return res.StatusCode
	}
	if code := onConn(secretOld); code != 200 {
		t.Fatalf("before the reload: %d", code)
	}

	_, after := e.events(secretOld, "limit=1000")
	polled := make(chan resp, 1)
	go func() { polled <- e.call("GET", "/v1/events?wait=5&limit=1&after="+after, secretOld, "") }()
	testtime.EventuallyTrue(t, waitMax, "the long-poll is waiting", func() bool { return e.srv.pollerSlots.len() == 1 })

	file.set(rotationKeys(``, secretNew))
	if err := e.srv.ReloadKeys(); err != nil {
		t.Fatal(err)
	}
	if code := onConn(secretNew); code != 200 {
		t.Fatalf("the new secret on the kept-alive connection: %d", code)
	}
	if code := onConn(secretOld); code != 401 {
		t.Fatalf("the removed secret on the kept-alive connection: %d", code)
	}
	if code := onConn(secretNew); code != 200 {
		t.Fatalf("the connection after a 401: %d", code)
	}
	want(t, e.post("/v1/bookings", secretNew, holdJSON("office-a", "patent", "alice", at(1, 9, 0))), 201, "")
	r := <-polled
	want(t, r, 200, "")
	if !strings.Contains(string(r.body), `"booking.held"`) {
		t.Fatalf("the long-poll across the reload answered %s", r.body)
	}
}

// lookup finds a key by every one of its secrets and by nothing else:
// not by a secret one byte off, nor a prefix or an extension of one.
func TestKeyringLookup(t *testing.T) {
	keys, err := LoadKeys([]byte(rotationKeys(``, secretOld, secretNew)))
	if err != nil {
		t.Fatal(err)
	}
	ring := newKeyring(keys, nil, func(Key) (float64, int) { return 1, 1 }, time.Time{})
	for i, s := range []string{secretOld, secretNew} {
		if p, pos := ring.lookup([]byte("Bearer " + s)); p == nil || p.name != "portal-r" || pos != i+1 {
			t.Fatalf("secret %s: %v at %d", s, p, pos)
		}
	}
	if p, pos := ring.lookup([]byte("bearer " + keyPortal)); p == nil || p.name != "portal-a" || pos != 1 {
		t.Fatalf("the scheme is case-insensitive: %v at %d", p, pos)
	}
	for _, s := range []string{secretOld[:len(secretOld)-1], secretOld + "0", "X" + secretOld[1:], secretOld[:len(secretOld)-1] + "8", ""} {
		if p, _ := ring.lookup([]byte("Bearer " + s)); p != nil {
			t.Fatalf("%q found key %s", s, p.name)
		}
	}
	if p, _ := ring.lookup([]byte(secretOld)); p != nil {
		t.Fatal("a secret without the Bearer scheme was accepted")
	}
}

// BenchmarkKeyringLookup is the authentication of every request: a
// presented secret found among keysMax keys of two secrets each (a
// rotation everywhere), and one found nowhere.
func BenchmarkKeyringLookup(b *testing.B) {
	keys := make([]Key, keysMax)
	for i := range keys {
		keys[i] = Key{Keys: []string{fmt.Sprintf("old-secret-%06d-0123456789", i), fmt.Sprintf("new-secret-%06d-0123456789", i)},
			Name: fmt.Sprintf("key-%d", i), Scopes: []string{ScopePortal}, Offices: []string{"*"}}
	}
	if err := validateKeys(keys); err != nil {
		b.Fatal(err)
	}
	ring := newKeyring(keys, nil, func(Key) (float64, int) { return 1, 1 }, time.Time{})
	for _, c := range []struct {
		name, header string
		found        bool
	}{{"found", "Bearer new-secret-000512-0123456789", true}, {"unknown", "Bearer new-secret-999999-0123456789", false}} {
		b.Run(c.name, func(b *testing.B) {
			header := []byte(c.header)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if p, _ := ring.lookup(header); (p != nil) != c.found {
						b.Error("wrong answer")
						return
					}
				}
			})
		})
	}
}

// FuzzLoadKeys: for any file, LoadKeys never panics; keys it accepts are
// valid and each of their secrets finds its key at its place; a refusal
// is one line (slotd prints it as one) that speaks of the file, not of a
// request body.
func FuzzLoadKeys(f *testing.F) {
	for _, seed := range []string{
		rotationKeys(``, secretOld), // the format of one secret per key
		rotationKeys(`,"rate_per_second":50,"rate_burst":80`, secretOld, secretNew),                                   // a rotation, and a rate of its own
		`{"key":"k-0123456789abcdef"}`,                                                                                // an object, not an array
		`[{"key":"k-0123456789abcdef","keys":["k-0123456789abcdeg"],"name":"a","scopes":["portal"],"offices":["*"]}]`, // both ways at once
		`[{"keys":["k-0123456789abcdef","k-0123456789abcdef"],"name":"a","scopes":["portal"],"offices":["*"]}]`,       // a secret twice
		"[{\"key\":\"k-0123456789abcdef\",\"name\":\"a\",\n\"scopes\":[\"portal\"] \"offices\":[\"*\"]}]",             // a syntax error on line 2
		`[{"key":"k-0123456789abcdef","name":"a","scopes":["portal"],"offices":["*"],"x\ny":1}]`,                      // an unknown field with a newline
		`[{"key":"k-0123456789abcdef","name":"a","namespace":"x\ny","scopes":["portal"],"offices":["*"]}]`,            // a namespace with a newline
		`[{"key":"k-0123456789abcdef","name":"a","scopes":["portal"],"offices":["*"],"rate_per_second":1e400}]`,       // a rate beyond float64
		`[1, null, "x"]`, // entries that are not objects
		``,               // an empty file
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := LoadKeys(data)
		if err != nil {
			msg := err.Error()
			if msg == "" || strings.ContainsAny(msg, "\n\r") || strings.Contains(msg, "body") {
				t.Fatalf("refusal %q", msg)
			}
			return
		}
		if err := validateKeys(keys); err != nil {
			t.Fatalf("accepted keys that validateKeys refuses: %v", err)
		}
		ring := newKeyring(keys, nil, func(Key) (float64, int) { return 1, 1 }, time.Time{})
		for _, k := range keys {
			for j, s := range k.secrets() {
				if p, pos := ring.lookup([]byte("Bearer " + s)); p == nil || p.name != k.Name || pos != j+1 {
					t.Fatalf("secret %d of %s finds %v at %d", j+1, k.Name, p, pos)
				}
			}
		}
	})
}
