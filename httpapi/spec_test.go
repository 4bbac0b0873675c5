package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// The live check of docs/openapi.yaml: every request the package's tests
// send through env.client, and the server's answer to it, are held to the
// spec by kin-openapi's openapi3filter (specTransport). The rules:
//
//   - A request is routed by the spec's paths; a route the spec lacks, or a
//     method it lacks, must be refused (4xx), never served.
//   - A request the spec refuses (a missing field, a wrong type, a value
//     out of range, no bearer key) must be refused by the server too. The
//     converse does not hold: the server refuses more than a schema can
//     say (a start off the grid, a date not released).
//   - Every answer on a spec route must have a status the operation lists
//     (or, for 408 and 431, which answer any request before it is routed,
//     the shared response in components), a Content-Type its response
//     lists, a body its schema accepts, no body where it lists none, and
//     the headers it declares in their declared form.
//   - Every operation of the spec answers some test with success (TestMain,
//     when the whole package runs): an operation no test reaches has no
//     answer held to the spec.
//
// A mismatch fails the test that made the exchange. TestSpecCheck shows
// that each rule can fail.

// openAPIPath is the spec, relative to the package.
const openAPIPath = "../docs/openapi.yaml"

// specServer is where the spec's servers entry puts the API; requests are
// routed as if sent there, whatever loopback port the test server has.
const specServer = "localhost:8080"

var spec struct {
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	err    error
}

// loadSpec loads and validates docs/openapi.yaml once for the package.
func loadSpec(t testing.TB) (*openapi3.T, routers.Router) {
	t.Helper()
	spec.once.Do(func() {
		// The non-JSON answers: their bodies are bytes or text to the
		// validator, checked against their media type only.
		openapi3filter.RegisterBodyDecoder("image/png", openapi3filter.FileBodyDecoder)
		openapi3filter.RegisterBodyDecoder("application/pdf", openapi3filter.FileBodyDecoder)
		openapi3filter.RegisterBodyDecoder("text/calendar", openapi3filter.PlainBodyDecoder)
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromFile(openAPIPath)
		if err != nil {
			spec.err = fmt.Errorf("load %s: %w", openAPIPath, err)
			return
		}
		if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation()); err != nil {
			spec.err = fmt.Errorf("validate %s: %w", openAPIPath, err)
			return
		}
		router, err := gorillamux.NewRouter(doc)
		if err != nil {
			spec.err = fmt.Errorf("route %s: %w", openAPIPath, err)
			return
		}
		spec.doc, spec.router = doc, router
	})
	if spec.err != nil {
		t.Fatal(spec.err)
	}
	return spec.doc, spec.router
}

// specOptions: every status must be listed, and the bearer scheme needs
// an Authorization header of its form (which key it names is the
// server's business).
var specOptions = &openapi3filter.Options{
	IncludeResponseStatus: true,
	MultiError:            true,
	AuthenticationFunc: func(_ context.Context, in *openapi3filter.AuthenticationInput) error {
		if in.SecurityScheme == nil || in.SecurityScheme.Type != "http" || !strings.EqualFold(in.SecurityScheme.Scheme, "bearer") {
			return fmt.Errorf("security scheme %q is not the bearer scheme", in.SecuritySchemeName)
		}
		h := in.RequestValidationInput.Request.Header.Get("Authorization")
		if len(h) < len("Bearer ")+1 || !strings.EqualFold(h[:len("Bearer ")], "Bearer ") {
			return errors.New("no bearer key")
		}
		return nil
	},
}

// specServed holds the operation ids that answered a checked request
// with success (TestMain).
var specServed sync.Map

// errSpec marks a mismatch between an exchange and the spec.
var errSpec = errors.New("openapi mismatch")

// checkExchange holds one request and its answer to the spec (the rules
// above). reqBody and resBody are the bodies as sent and received.
func checkExchange(router routers.Router, req *http.Request, reqBody []byte, res *http.Response, resBody []byte) error {
	ctx := context.Background()
	what := req.Method + " " + req.URL.RequestURI()
	served := res.StatusCode < 400

	// Route as if sent to the spec's server.
	rreq := req.Clone(ctx)
	rreq.URL.Scheme, rreq.URL.Host, rreq.Host = "http", specServer, specServer
	rreq.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(reqBody)), nil }
	rreq.Body, _ = rreq.GetBody()
	rreq.ContentLength = int64(len(reqBody))
	route, params, err := router.FindRoute(rreq)
	if err != nil {
		if served {
			return fmt.Errorf("%w: %s answered %d, but the spec has no such route: %v", errSpec, what, res.StatusCode, err)
		}
		return nil
	}
	in := &openapi3filter.RequestValidationInput{Request: rreq, PathParams: params, Route: route, Options: specOptions}
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil && served {
		return fmt.Errorf("%w: %s answered %d to a request the spec refuses: %v\nrequest body: %s", errSpec, what, res.StatusCode, err, reqBody)
	}
	if name, ok := connectionStatuses[res.StatusCode]; ok && route.Operation.Responses.Status(res.StatusCode) == nil {
		route = withResponse(route, res.StatusCode, name)
		in.Route = route
	}
	// The request's body was consumed; the response check reads only its
	// route, parameters and headers.
	rin := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 res.StatusCode,
		Header:                 res.Header,
		Body:                   io.NopCloser(bytes.NewReader(resBody)),
		Options:                specOptions,
	}
	if err := openapi3filter.ValidateResponse(ctx, rin); err != nil {
		return fmt.Errorf("%w: %s (operation %s) answered %d: %v\nresponse body: %.2000s", errSpec, what, route.Operation.OperationID, res.StatusCode, err, resBody)
	}
	if served {
		specServed.Store(route.Operation.OperationID, true)
	}
	// ValidateResponse leaves alone a body where the spec lists none.
	if r := route.Operation.Responses.Status(res.StatusCode); r != nil && r.Value != nil && len(r.Value.Content) == 0 && len(resBody) > 0 {
		return fmt.Errorf("%w: %s answered %d with a body, where the spec lists none: %.200s", errSpec, what, res.StatusCode, resBody)
	}
	return nil
}

// connectionStatuses are the answers the server may give to any request,
// before it routes it, by their names in components/responses.
var connectionStatuses = map[int]string{
	http.StatusRequestTimeout:              "RequestTimeout",
	http.StatusRequestHeaderFieldsTooLarge: "HeadersTooLarge",
}

// withResponse returns route with its operation answering status as the
// component response name says, and nothing else.
func withResponse(route *routers.Route, status int, name string) *routers.Route {
	op := *route.Operation
	op.Responses = openapi3.NewResponses(openapi3.WithStatus(status, route.Spec.Components.Responses[name]))
	r := *route
	r.Operation = &op
	return &r
}

// specTransport is an http.RoundTripper that checks every exchange with
// checkExchange and fails t on a mismatch. Safe for concurrent use.
type specTransport struct {
	t      testing.TB
	base   http.RoundTripper
	router routers.Router
}

func newSpecTransport(t testing.TB, base http.RoundTripper) *specTransport {
	_, router := loadSpec(t)
	return &specTransport{t: t, base: base, router: router}
}

func (s *specTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
		reqBody = b
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	res, err := s.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resBody, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if err != nil {
		return nil, err
	}
	res.Body = io.NopCloser(bytes.NewReader(resBody))
	if err := checkExchange(s.router, req, reqBody, res, resBody); err != nil {
		s.t.Errorf("%v", err)
	}
	return res, nil
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// base transport.
func (s *specTransport) CloseIdleConnections() {
	if c, ok := s.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// exchange is one request and its answer, bodies read.
type exchange struct {
	req     *http.Request
	reqBody []byte
	res     *http.Response
	resBody []byte
}

// rawExchange sends a request past the spec check and returns it with
// its answer.
func (e *env) rawExchange(method, path, key, body string) exchange {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := e.client.Transport.(*specTransport).base.RoundTrip(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return exchange{req: req, reqBody: []byte(body), res: res, resBody: b}
}

// TestSpecCheck: the live check passes real exchanges and fails each of
// them altered in one way the spec forbids.
func TestSpecCheck(t *testing.T) {
	e := newEnv(t, nil)
	_, router := loadSpec(t)
	hold := holdJSON("office-a", "patent", "a-spec", at(1, 10, 0))
	held := e.rawExchange("POST", "/v1/bookings", keyPortal, hold)
	if held.res.StatusCode != 201 {
		t.Fatalf("hold: %d %s", held.res.StatusCode, held.resBody)
	}
	cfg, err := json.Marshal(testOffice("office-a"))
	if err != nil {
		t.Fatal(err)
	}
	office := e.rawExchange("PUT", "/v1/offices/office-a", keyAdmin, string(cfg))
	if office.res.StatusCode != 200 {
		t.Fatalf("office: %d %s", office.res.StatusCode, office.resBody)
	}
	for _, x := range []exchange{held, office} {
		if err := checkExchange(router, x.req, x.reqBody, x.res, x.resBody); err != nil {
			t.Fatalf("a real exchange fails the check: %v", err)
		}
	}

	// with returns x with the answer's status, Content-Type or body
	// replaced, and the request's body.
	with := func(x exchange, status int, contentType, reqBody, resBody string) exchange {
		res := *x.res
		res.Header = x.res.Header.Clone()
		if status != 0 {
			res.StatusCode = status
		}
		if contentType != "" {
			res.Header.Set("Content-Type", contentType)
		}
		if reqBody != "" {
			x.reqBody = []byte(reqBody)
		}
		if resBody != "" {
			x.resBody = []byte(resBody)
		}
		x.res = &res
		return x
	}
	heldBody := string(held.resBody)
	for _, tc := range []struct {
		name string
		x    exchange
	}{
		{"answer without a required field", with(held, 0, "", "", strings.Replace(heldBody, `"status":"held",`, "", 1))},
		{"answer with a status out of the enum", with(held, 0, "", "", strings.Replace(heldBody, `"status":"held"`, `"status":"parked"`, 1))},
		{"answer with a wrong type", with(held, 0, "", "", strings.Replace(heldBody, `"reschedules":0`, `"reschedules":"0"`, 1))},
		{"answer with a malformed date-time", with(held, 0, "", "", strings.Replace(heldBody, `"start":"2026-12-01T10:00:00+03:00"`, `"start":"tomorrow"`, 1))},
		{"status the operation does not list", with(held, http.StatusTeapot, "", "", "")},
		{"Content-Type the answer does not list", with(held, 0, "text/plain", "", "")},
		{"served request without a required field", with(held, 0, "", `{"service":"patent","applicant":"a-spec","start":"2026-12-01T10:00:00+03:00"}`, "")},
		{"served request with an unknown field", with(office, 0, "", strings.Replace(string(cfg), "{", `{"colour":"red",`, 1), "")},
		{"served request with an unknown field in a nested object", with(office, 0, "", strings.Replace(string(cfg), `"policy":{`, `"policy":{"colour":"red",`, 1), "")},
		{"served request with a value out of range", with(office, 0, "", strings.Replace(string(cfg), `"windows":2`, `"windows":0`, 1), "")},
		{"served request without a key", func() exchange {
			x := held
			x.req = x.req.Clone(context.Background())
			x.req.Header.Del("Authorization")
			return x
		}()},
		{"served route the spec lacks", exchange{req: mustRequest(t, "GET", e.url+"/v1/colours"), res: office.res, resBody: office.resBody}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkExchange(router, tc.x.req, tc.x.reqBody, tc.x.res, tc.x.resBody)
			if !errors.Is(err, errSpec) {
				t.Fatalf("checkExchange = %v, want a mismatch", err)
			}
			t.Log(err)
		})
	}
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+keyPortal)
	return req
}
