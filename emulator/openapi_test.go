package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// specPath is a copy of ../shared/socotra/openapi-subset.json, kept in the
// repository so the test runs anywhere; TestOpenAPISpecCopyIsCurrent checks
// it against the shared original when that is present.
const specPath = "testdata/openapi-subset.json"

func init() {
	openapi3.DefineStringFormatValidator("ulid", openapi3.NewRegexpFormatValidator(`^[0-7][0-9A-HJKMNP-TV-Z]{25}$`))
	openapi3.DefineStringFormatValidator("uuid", openapi3.NewRegexpFormatValidator(openapi3.FormatOfStringForUUIDOfRFC9562))
}

func TestOpenAPISpecCopyIsCurrent(t *testing.T) {
	shared, err := os.ReadFile("../../shared/socotra/openapi-subset.json")
	if err != nil {
		t.Skipf("the shared original is not beside the repository: %v", err)
	}
	local, err := os.ReadFile(specPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(shared, local) {
		t.Errorf("%s differs from ../shared/socotra/openapi-subset.json: copy it again", specPath)
	}
}

// specValidator validates the emulator's answers against the OpenAPI subset.
type specValidator struct {
	t      *testing.T
	doc    *openapi3.T
	router routers.Router
	data   map[string]*openapi3.Schema // event type → schema of its data
	seen   map[string]int              // operationId → validated responses
}

// loadSpec loads the subset with two documented amendments:
//   - EventResponse.data declares additionalProperties {type: object}, which
//     no real payload satisfies (quoteLocator is a string in the per-type
//     definitions): the generic schema is relaxed to any object, and every
//     event's data is validated against its type's schema from the
//     *EventTypeDefinitions instead, which is stricter;
//   - the policy-status enum gains "inGap", which the seed documents and the
//     enum does not list yet.
func loadSpec(t *testing.T, serverURL string) *specValidator {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(specPath)
	if err != nil {
		t.Fatalf("load %s: %v", specPath, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the OpenAPI subset itself is invalid: %v", err)
	}
	schemas := doc.Components.Schemas
	yes := true
	schemas["EventResponse"].Value.Properties["data"].Value.AdditionalProperties = openapi3.AdditionalProperties{Has: &yes}
	items := schemas["ListPageResponsePolicyStatus"].Value.Properties["items"].Value.Items.Value
	items.Enum = append(items.Enum, "inGap")
	doc.Servers = openapi3.Servers{{URL: serverURL}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	v := &specValidator{t: t, doc: doc, router: router, data: map[string]*openapi3.Schema{}, seen: map[string]int{}}
	for name, group := range schemas {
		if !strings.HasSuffix(name, "EventTypeDefinitions") {
			continue
		}
		for _, events := range group.Value.Properties {
			for typ, s := range events.Value.Properties {
				v.data[typ] = s.Value
			}
		}
	}
	if len(v.data) < 100 {
		t.Fatalf("found %d event type definitions, want the subset's full list", len(v.data))
	}
	return v
}

// do sends a request, validates request and response against the spec and
// returns the response status and body.
func (v *specValidator) do(hs *httptest.Server, method, path string, body any) (int, []byte) {
	t := v.t
	t.Helper()
	var rb []byte
	if body != nil {
		var err error
		if rb, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, hs.URL+path, bytes.NewReader(rb))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	route, params, err := v.router.FindRoute(req)
	if err != nil {
		t.Fatalf("%s %s is not in the OpenAPI subset: %v", method, path, err)
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		t.Fatalf("request %s %s does not match the spec: %v", method, path, err)
	}
	req.Body = io.NopCloser(bytes.NewReader(rb))
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, out)
	}
	err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(out)), Options: opts,
	})
	if err != nil {
		t.Fatalf("response of %s %s does not match the spec: %v\n%s", method, path, err, truncate(out))
	}
	v.seen[route.Operation.OperationID]++
	return resp.StatusCode, out
}

func truncate(b []byte) string {
	if len(b) > 600 {
		return string(b[:600]) + "…"
	}
	return string(b)
}

// checkData validates each event's data against its type's definition.
func (v *specValidator) checkData(events []pageEvent) {
	v.t.Helper()
	for _, e := range events {
		s, ok := v.data[e.Type]
		if !ok {
			v.t.Fatalf("event type %s has no definition in the OpenAPI subset", e.Type)
		}
		var d any
		if err := json.Unmarshal(e.Data, &d); err != nil {
			v.t.Fatal(err)
		}
		if err := s.VisitJSON(d, openapi3.MultiErrors(), openapi3.EnableFormatValidation()); err != nil {
			v.t.Fatalf("data of %s %s does not match its definition: %v\n%s", e.Type, e.Locator, err, e.Data)
		}
	}
}

// TestOpenAPIValidation validates every response of every suite endpoint.
func TestOpenAPIValidation(t *testing.T) {
	s, hs := newTestServer(t, Config{Seed: 21, Policies: 150, Events: 20000, Token: "tok"})
	authed := &http.Client{Transport: bearer{"tok", http.DefaultTransport}}
	hs.Client().Transport = authed.Transport
	v := loadSpec(t, hs.URL)
	tenant := s.Tenant()

	// The stream, page by page, and every event's data.
	var all []pageEvent
	q := "?startTimestamp=2000-01-01T00:00:00Z&pageSize=1000"
	for {
		_, body := v.do(hs, http.MethodGet, "/event/"+tenant+"/events/list"+q, nil)
		var p page
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		all = append(all, p.Events...)
		q = "?pagingToken=" + p.PagingToken
		if len(p.Events) == 0 {
			break
		}
	}
	if len(all) != s.Len() {
		t.Fatalf("paged %d events, want %d", len(all), s.Len())
	}
	v.checkData(all)
	v.do(hs, http.MethodGet, "/event/"+tenant+"/events/list?type=policy.status.update&pageSize=5", nil)

	// Single events, request events and billing look-ups, for a sample of
	// every type.
	perType := map[string]int{}
	for _, e := range all {
		if perType[e.Type] >= 3 {
			continue
		}
		perType[e.Type]++
		_, body := v.do(hs, http.MethodGet, "/event/"+tenant+"/events/"+e.Locator, nil)
		var one pageEvent
		json.Unmarshal(body, &one)
		v.checkData([]pageEvent{one})
		_, body = v.do(hs, http.MethodGet, "/event/"+tenant+"/events/request/"+e.RequestID, nil)
		var reqEvents []pageEvent
		json.Unmarshal(body, &reqEvents)
		v.checkData(reqEvents)
		var d suiteData
		json.Unmarshal(e.Data, &d)
		switch {
		case d.InvoiceLocator != "":
			v.do(hs, http.MethodGet, "/billing/"+tenant+"/invoices/"+d.InvoiceLocator, nil)
		case d.PaymentLocator != "":
			v.do(hs, http.MethodGet, "/billing/"+tenant+"/payments/"+d.PaymentLocator, nil)
		case d.DelinquencyLocator != "":
			v.do(hs, http.MethodGet, "/billing/"+tenant+"/delinquencies/"+d.DelinquencyLocator, nil)
		}
	}

	// Webhooks and diverted events: the receiver fails until told otherwise.
	var healthy atomic.Bool
	got := make(chan struct{}, 1000)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- struct{}{}
		if !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer recv.Close()
	create := map[string]any{
		"name": "audit", "enabled": true, "eventTypes": []string{"policy.quote.create"},
		"endpoint": map[string]any{"url": recv.URL, "hmacEnabled": true, "secret": "shh"},
		"failureHandling": map[string]any{
			"alertEndpoint": map[string]any{"url": recv.URL}, "triggers": []string{"5xx"},
			"retryStrategy": map[string]any{"type": "linear", "interval": 1, "attempts": 2},
			"divert":        true, "suspend": false,
		},
	}
	_, body := v.do(hs, http.MethodPost, "/event/"+tenant+"/webhooks", create)
	var wh webhookJSON
	json.Unmarshal(body, &wh)
	base := "/event/" + tenant + "/webhooks/" + wh.Locator
	v.do(hs, http.MethodGet, "/event/"+tenant+"/webhooks/list", nil)
	v.do(hs, http.MethodGet, base, nil)
	v.do(hs, http.MethodPatch, base, map[string]any{
		"name": "audit2", "enabled": true,
		"endpoint": map[string]any{"url": recv.URL, "addHeaders": map[string][]string{"X-Env": {"test"}}, "removeHeaders": []string{}},
		"failureHandling": map[string]any{
			"alertEndpoint":       map[string]any{"url": recv.URL, "addHeaders": map[string][]string{}, "removeHeaders": []string{}},
			"removeAlertEndpoint": false, "removeRetryStrategy": false, "divert": true, "suspend": false,
			"retryStrategy": map[string]any{"type": "exponential", "interval": 1, "attempts": 2},
			"addTriggers":   []string{"404"}, "removeTriggers": []string{},
		},
		"removeFailureHandling": false,
		"addEventTypes":         []string{"policy.quote.price"}, "removeEventTypes": []string{},
	})
	var diverted []divertedJSON
	for tries := 0; len(diverted) < 2 && tries < 400; tries++ {
		s.Append(50)
		_, body = v.do(hs, http.MethodGet, base+"/diverted?offset=0&count=10", nil)
		diverted = nil
		json.Unmarshal(body, &diverted)
	}
	if len(diverted) < 2 {
		t.Fatalf("%d diverted events after many appends", len(diverted))
	}
	v.do(hs, http.MethodGet, base+"/diverted/"+diverted[0].EventLocator, nil)
	healthy.Store(true)
	v.do(hs, http.MethodPost, base+"/diverted/"+diverted[0].EventLocator+"/resend", nil)
	v.do(hs, http.MethodDelete, base+"/diverted/"+diverted[1].EventLocator, nil)
	v.do(hs, http.MethodPatch, base+"/unsuspend", nil)
	v.do(hs, http.MethodDelete, base, nil)

	want := []string{"fetchMultipleEvents", "fetchEvent", "fetchEventsForARequest", "getInvoiceWithItems", "fetchPayment",
		"getDelinquency", "createWebhook", "fetchWebhooks", "fetchWebhook", "updateWebhook", "fetchMultipleDivertedEvents",
		"fetchDivertedEvent", "resendDivertedEvent", "deleteDivertedEvent", "unsuspendWebhook", "deleteWebhook"}
	for _, op := range want {
		if v.seen[op] == 0 {
			t.Errorf("operation %s was never validated", op)
		}
	}
	var types []string
	for typ := range perType {
		types = append(types, typ)
	}
	slices.Sort(types)
	t.Logf("validated %d events of %d types: %v", len(all), len(types), types)
}

// bearer adds an Authorization header to every request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}
