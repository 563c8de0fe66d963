package eventapi

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/source"
)

// decodeCorpus holds page bodies of every shape the decoders must agree on:
// the API's own, and pages that each depart from it in one way.
func decodeCorpus() []string {
	suite := `{"locator":"01J1","requestId":"R","userLocator":"U","timestamp":"2024-02-29T23:59:59.123Z","type":"policy.issue","data":{"policyLocator":"P1","x":[1,2.5e3,-0.1,true,false,null,{"a":"\u00e9\n"}]}}`
	classic := `{"id":"c1","timestamp":1704067200123,"type":"policy.issue","data":{"policyLocator":"P1"},"username":"u","transactionId":77}`
	page := func(events ...string) string {
		return `{"events":[` + strings.Join(events, ",") + `],"pagingToken":"tok"}`
	}
	bodies := []string{
		page(suite, suite),
		page(classic),
		page(),
		`{"pagingToken":"tok","events":[]}`,
		` { "events" : [ ` + suite + ` ] , "pagingToken" : "tok" , "extra" : {"a":[1,{}]} } `,
		`{"events":null,"pagingToken":"tok"}`,
		`{"events":[],"pagingToken":"tok"}x`,
		`{"events":[],"pagingToken":"tok"`,
		`{"events":[],"pagingToken":"tok",}`,
		`{"events":[],"pagingToken":null}`,
		`{"events":[],"pagingToken":"t\u00f6k"}`,
		`{"Events":[` + suite + `],"pagingToken":"tok"}`,
		`{"events":[` + suite + `],"PagingToken":"tok"}`,
		`{"events":[],"events":[` + suite + `],"pagingToken":"tok"}`,
		`{"events":[],"pagingToken":"a","pagingToken":"b"}`,
		page(`{"Locator":"L","timestamp":"2024-01-01T00:00:00Z","type":"t","data":{}}`),
		page(`{"locator":"L","locator":"M","timestamp":"2024-01-01T00:00:00Z","type":"t","data":{}}`),
		page(`{"locator":"L\"q\\u0041","timestamp":"2024-01-01T00:00:00Z","type":"t\u00e9","data":{"k":"\ud83d\ude00"}}`),
		page("{\"locator\":\"L\xff\xfe\",\"timestamp\":\"2024-01-01T00:00:00Z\",\"type\":\"t\",\"data\":{\"k\":\"\xc3\"}}"),
		page(`{"locator":"L","timestamp":"2024-01-01T00:00:00Z","type":"t","data":null}`),
		page(`{"locator":"L","timestamp":"2024-01-01T00:00:00Z","type":"t"}`),
		page(`{"locator":null,"timestamp":"2024-01-01T00:00:00Z","type":"t","data":{}}`),
		page(`{"locator":"L","timestamp":"2024-01-01T00:00:00+02:00","type":"t","data":{}}`),
		page(`{"locator":"L","timestamp":"2024-02-30T00:00:00Z","type":"t","data":{}}`),
		page(`{"locator":"L","timestamp":"yesterday","type":"t","data":{}}`),
		page(`{"locator":42,"timestamp":"2024-01-01T00:00:00Z","type":"t","data":{}}`),
		page(`{"locator":"L","timestamp":"2024-01-01T00:00:00Z","type":"t","data":{}}`, `17`, `null`, `[]`),
		page(`{"locator":"L","timestamp":"2024-01-01T00:00:00Z","type":"t","data":{"a":01}}`),
		page(`{"locator":"L","timestamp":"2024-01-01T00:00:00Z","type":"t","data":{"a":"tab	in"}}`),
		page(`{"locator":"L","timestamp":"2024-01-01T00:00:00Z","type":"t","data":{"a":"\x"}}`),
		page(`{"locator":"L","timestamp":"2024-01-01T00:00:00Z","type":"t","data":tru}`),
		page(`{"locator":"L","timestamp":"2024-01-01T00:00:00Z","type":"t","data":{"a":1.}}`),
		page(`{"locator":"L","timestamp":"2024-01-01T00:00:00Z","type":"t","data":{"a":-}}`),
		page(`{"locator":"L","timestamp":"2024-01-01T00:00:00Z","type":"t","data":{"a":1e+}}`),
		page(`{"locator":"","timestamp":"","type":"","data":{}}`),
		page(`{"locator":"L","timestamp":"2024-01-01T00:00:00Z","type":"t","data":` + strings.Repeat("[", 600) + strings.Repeat("]", 600) + `}`),
		page(`{"id":"c","timestamp":"1704067200000","type":"t","data":{}}`),
		page(`{"id":{"x":1},"timestamp":1.5,"type":"t","data":{}}`),
		page(`{"id":"c","timestamp":null,"type":"t"}`),
		page(`{"ID":"c","timestamp":1,"type":"t"}`),
		page(`{"id":"c","timestamp":1,"type":7}`),
		`<html>`, `[1,2]`, ``, `null`, `{}`, `{"events":{"a":1},"pagingToken":"p1"}`,
	}
	return bodies
}

// sameDecode holds decodePage (fast path first) to decodePageReference on
// one body, for one flavor.
func sameDecode(t *testing.T, flavor string, body []byte) {
	t.Helper()
	ref, refNext, refErr := decodePageReference(flavor, "t", bytes.Clone(body))
	got, next, err := decodePage(flavor, "t", bytes.Clone(body))
	if fmt.Sprint(err) != fmt.Sprint(refErr) || next != refNext {
		t.Fatalf("%s page %.300q:\n fast      %q, %v\n reference %q, %v", flavor, body, next, err, refNext, refErr)
	}
	if len(got) != len(ref) {
		t.Fatalf("%s page %.300q: %d events, reference %d", flavor, body, len(got), len(ref))
	}
	for i := range got {
		g, r := got[i], ref[i]
		if !g.Timestamp.Equal(r.Timestamp) || g.Timestamp.Location().String() != r.Timestamp.Location().String() {
			t.Fatalf("%s page %.300q event %d: Timestamp %v, reference %v", flavor, body, i, g.Timestamp, r.Timestamp)
		}
		g.Timestamp, r.Timestamp = time.Time{}, time.Time{}
		if !reflect.DeepEqual(g, r) {
			t.Fatalf("%s page %.300q event %d:\n fast      %+v\n reference %+v", flavor, body, i, g, r)
		}
	}
}

// TestFastDecodeAgrees decodes a corpus of pages (the API's shape and one
// departure from it at a time) and emulated pages of both flavors with both
// decoders: events, token and error must be the same, and the emulator's
// pages must take the fast path (else it would be correct but pointless).
func TestFastDecodeAgrees(t *testing.T) {
	for _, body := range decodeCorpus() {
		for _, flavor := range []string{source.FlavorSuite, source.FlavorClassic} {
			sameDecode(t, flavor, []byte(body))
		}
	}
	for _, flavor := range []string{source.FlavorSuite, source.FlavorClassic} {
		body := pageBody(t, flavor)
		sameDecode(t, flavor, body)
		if evs, _, ok := decodePageFast(flavor, "t", body); !ok || len(evs) != 1000 {
			t.Errorf("%s: the emulator's page did not take the fast path (%d events, ok %v)", flavor, len(evs), ok)
		}
		// Every single-byte truncation and a spread of one-byte changes.
		rng := rand.New(rand.NewPCG(1, uint64(len(flavor))))
		for range 300 {
			b := bytes.Clone(body)
			switch i := rng.IntN(len(b)); rng.IntN(3) {
			case 0:
				b = b[:i]
			case 1:
				b[i] = `{}[]",:0-. tfn\e"`[rng.IntN(17)]
			default:
				b = append(b[:i:i], b[i+1:]...)
			}
			sameDecode(t, flavor, b)
		}
	}
}

func FuzzDecodePage(f *testing.F) {
	for _, body := range decodeCorpus() {
		f.Add(body, false)
		f.Add(body, true)
	}
	f.Fuzz(func(t *testing.T, body string, classic bool) {
		flavor := source.FlavorSuite
		if classic {
			flavor = source.FlavorClassic
		}
		sameDecode(t, flavor, []byte(body))
	})
}

func TestParseTimestampAgreesWithTimeParse(t *testing.T) {
	values := []string{
		"2024-01-01T00:00:00Z", "2024-01-01T00:00:00.1Z", "2024-01-01T00:00:00.123456789Z",
		"2024-01-01T00:00:00.1234567891Z", "2024-01-01T00:00:00.Z", "2024-02-29T23:59:59.999Z",
		"2023-02-29T00:00:00Z", "2024-04-31T00:00:00Z", "2024-13-01T00:00:00Z", "2024-00-10T00:00:00Z",
		"2024-01-00T00:00:00Z", "2024-01-01T24:00:00Z", "2024-01-01T23:60:00Z", "2024-01-01T23:59:60Z",
		"2024-01-01t00:00:00Z", "2024-01-01T00:00:00z", "2024-01-01 00:00:00Z", "2024-01-01T00:00:00+00:00",
		"2024-01-01T00:00:00-07:30", "+024-01-01T00:00:00Z", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z",
		"2024-1-01T00:00:00Z", "2024-01-01T00:00:0Z", "", "Z", "2024-01-01T00:00:00.12a4Z", "2024-01-01T00:00:00,123Z",
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for range 20000 {
		ts := time.UnixMilli(rng.Int64N(4102444800000)).UTC().Add(time.Duration(rng.IntN(1000)) * time.Microsecond)
		layout := []string{time.RFC3339Nano, "2006-01-02T15:04:05.000Z07:00", time.RFC3339, "2006-01-02T15:04:05.000000Z07:00"}[rng.IntN(4)]
		values = append(values, ts.Format(layout))
	}
	for _, v := range values {
		got, err := parseTimestamp(v)
		want, wantErr := time.Parse(time.RFC3339Nano, v)
		if fmt.Sprint(err) != fmt.Sprint(wantErr) || !got.Equal(want) || got.Location().String() != want.Location().String() {
			t.Errorf("parseTimestamp(%q) = %v, %v; time.Parse: %v, %v", v, got, err, want, wantErr)
		}
	}
}
