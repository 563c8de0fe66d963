package mapping

import (
	"encoding/json"
	"reflect"
	"sort"
	"testing"
	"time"
	"unsafe"

	"github.com/tributary-cdc/tributary/internal/jsonscan"
	"github.com/tributary-cdc/tributary/source"
)

func addSeeds(f *testing.F) {
	for _, p := range samplePayloads {
		f.Add(p.typ, p.data)
	}
	for _, s := range []string{
		``, `null`, `[]`, `"x"`, `12`, `{`, `{"a":`, `{"policyLocator":}`, `{"policyLocators":{"items":[1,{},[]],"listCompleted":"yes"}}`,
		`{"newStatuses":[],"removedStatuses":"x"}`, `{"xLocator":"\ud800"}`, `{"a\"Locator":"b\\","locator":"\u0041"}`,
		"{\"policyLocator\":\"\xff\"}", `{"policyLocator":"a","policyLocator":"b"}`, ` { "quoteLocator" : "Q" } `,
	} {
		f.Add("policy.status.update", s)
	}
}

// FuzzMap feeds arbitrary payloads to Map: it must never panic, must always
// produce exactly one events row with the raw data kept, rows of the
// documented Go types, and a parse error whenever the payload is not a JSON object.
func FuzzMap(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, typ, data string) {
		e := suiteEvent(typ, data)
		rows := NewRows()
		st := Map(source.Batch{Events: []source.Event{e}}, Options{FullPolicyLocators: map[string][]string{e.Locator: {"X"}}}, rows)
		if st.Events != 1 || rows.ByTable[TableEvents].Len() != 1 {
			t.Fatalf("got %d events, %d rows", st.Events, rows.ByTable[TableEvents].Len())
		}
		checkRowTypes(t, rows)
		row := rows.ByTable[TableEvents].Row(0)
		if row[evData] != data {
			t.Fatalf("data: got %q, want %q", row[evData], data)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal([]byte(data), &obj); (err != nil || obj == nil) && row[evParseError] == "" {
			t.Fatalf("payload %q is no JSON object, yet parse_error is empty", data)
		}
		if (row[evParseError] != "") != (st.ParseErrors == 1) {
			t.Fatalf("parse_error %q disagrees with Stats.ParseErrors %d", row[evParseError], st.ParseErrors)
		}
		keys, values := row[evLocatorKeys].([]string), row[evLocatorValues].([]string)
		if len(keys) != len(values) || !sort.StringsAreSorted(keys) {
			t.Fatalf("locator_keys %q and locator_values %q are not parallel and sorted", keys, values)
		}
		if json.Valid([]byte(data)) {
			// What a source vouches for: trusting it changes no row.
			trusted := NewRows()
			Map(source.Batch{Events: []source.Event{e}}, Options{FullPolicyLocators: map[string][]string{e.Locator: {"X"}}, TrustData: true}, trusted)
			if !reflect.DeepEqual(trusted, rows) {
				t.Fatalf("payload %q: rows with TrustData differ", data)
			}
		}
	})
}

// TestTrustDataSameRows maps the sample mix with and without TrustData: the
// same rows, and the trusted data column shares the events' memory.
func TestTrustDataSameRows(t *testing.T) {
	b := source.Batch{Events: sampleEvents(1000), Position: "tok"}
	opts := Options{Pipeline: "p", IngestedAt: time.Unix(1e9, 0)}
	checked := NewRows()
	Map(b, opts, checked)
	opts.TrustData = true
	trusted := NewRows()
	Map(b, opts, trusted)
	if !reflect.DeepEqual(trusted, checked) {
		t.Fatal("rows with TrustData differ from rows without")
	}
	col := trusted.ByTable[TableEvents].Values[evData].Strings
	for i, e := range b.Events {
		if len(e.Data) > 0 && unsafe.StringData(col[i]) != &e.Data[0] {
			t.Fatalf("event %d: the trusted data column holds a copy", i)
		}
	}
}

// FuzzScan checks eachMember against encoding/json on valid JSON objects:
// the same keys, and for string members the same values.
func FuzzScan(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, _ string, data string) {
		if !json.Valid([]byte(data)) {
			return
		}
		var want map[string]json.RawMessage
		if err := json.Unmarshal([]byte(data), &want); err != nil || want == nil {
			return
		}
		got := map[string]string{}
		var p payload
		trimmed := jsonscan.TrimSpace(data)
		jsonscan.EachMember(trimmed, func(k, v string) {
			got[k] = v
			_ = p.str(k, v) // must not panic on any kind of value
			if v[0] == '[' {
				jsonscan.EachElement(v, func(string) {})
			}
		})
		if len(got) != len(want) {
			t.Fatalf("%q: got keys %v, want %d keys", data, got, len(want))
		}
		for k, raw := range want {
			v, ok := got[k]
			if !ok {
				t.Fatalf("%q: key %q missing", data, k)
			}
			var ws string
			if json.Unmarshal(raw, &ws) == nil {
				if gs := jsonscan.Unquote(v); gs != ws {
					t.Fatalf("%q: member %q got %q, want %q", data, k, gs, ws)
				}
			}
			var a, b any
			if json.Unmarshal(raw, &a) != nil || json.Unmarshal([]byte(v), &b) != nil || !reflect.DeepEqual(a, b) {
				t.Fatalf("%q: member %q got raw %s, want %s", data, k, v, raw)
			}
		}
	})
}

// TestResetRowsForReuse maps a batch into rows that held another batch
// (Reset in between): the same rows as a fresh Rows, and nothing of the
// first batch is left in the kept memory.
func TestResetRowsForReuse(t *testing.T) {
	opts := Options{Pipeline: "p", IngestedAt: time.Unix(1e9, 0), TrustData: true}
	first := source.Batch{Events: sampleEvents(1000), Position: "a"}
	second := source.Batch{Events: sampleEvents(300)[100:], Position: "b"}
	reused := NewRows()
	Map(first, opts, reused)
	kept := reused.ByTable[TableEvents].Values[evLocator].Strings
	reused.Reset()
	if reused.Len() != 0 {
		t.Fatalf("%d rows after Reset", reused.Len())
	}
	for i, s := range kept[:cap(kept)] {
		if s != "" {
			t.Fatalf("Reset left value %d (%q) in the kept column", i, s)
		}
	}
	Map(second, opts, reused)
	fresh := NewRows()
	Map(second, opts, fresh)
	if !reflect.DeepEqual(reused.ByTable, fresh.ByTable) {
		t.Fatal("rows mapped into reset rows differ from rows mapped into fresh ones")
	}
}
