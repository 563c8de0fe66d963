package mapping

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/source"
)

var testTime = time.Date(2025, 3, 4, 5, 6, 7, 891_234_567, time.FixedZone("x", 3600))

func suiteEvent(typ, data string) source.Event {
	return source.Event{
		Locator:     "01JEVENT0000000000000000001",
		RequestID:   "01JREQ00000000000000000001",
		UserLocator: "2d1c0f5e-0000-4000-8000-000000000001",
		Tenant:      "tenant-a",
		Type:        typ,
		Timestamp:   testTime,
		Data:        json.RawMessage(data),
		Flavor:      source.FlavorSuite,
		Seq:         1741061167891,
	}
}

func classicEvent(typ, data string) source.Event {
	return source.Event{
		Locator:   "0192f0e0-0000-7000-8000-000000000001",
		Username:  "alice",
		Tenant:    "classic-tenant",
		Type:      typ,
		Timestamp: testTime,
		Data:      json.RawMessage(data),
		Flavor:    source.FlavorClassic,
		Seq:       1741061167891,
	}
}

// columnIndex returns the position of column in table of DefaultSchema.
func columnIndex(t testing.TB, table, column string) int {
	t.Helper()
	for _, tb := range DefaultSchema().Tables {
		if tb.Name != table {
			continue
		}
		for i, c := range tb.Columns {
			if c.Name == column {
				return i
			}
		}
	}
	t.Fatalf("no column %s.%s", table, column)
	return -1
}

// value returns the named column of a row of table.
func value(t testing.TB, table string, row []any, column string) any {
	t.Helper()
	return row[columnIndex(t, table, column)]
}

// checkRowTypes fails unless every row of rows has one value per column of
// its table, of the Go type schema.go documents for the column's type.
func checkRowTypes(t testing.TB, rows *Rows) {
	t.Helper()
	tables := map[string]Table{}
	for _, tb := range DefaultSchema().Tables {
		tables[tb.Name] = tb
	}
	for name, rs := range rows.ByTable {
		tb, ok := tables[name]
		if !ok {
			t.Fatalf("rows for unknown table %q", name)
		}
		for _, r := range rs.AllRows() {
			if len(r) != len(tb.Columns) {
				t.Fatalf("%s row has %d values, want %d", name, len(r), len(tb.Columns))
			}
			for i, c := range tb.Columns {
				if err := checkValue(c.Type, r[i]); err != nil {
					t.Fatalf("%s.%s: %v", name, c.Name, err)
				}
			}
		}
	}
}

func checkValue(ct ColumnType, v any) error {
	switch ct {
	case String, LowString:
		if _, ok := v.(string); !ok {
			return fmt.Errorf("got %T, want string", v)
		}
	case Time:
		tm, ok := v.(time.Time)
		if !ok {
			return fmt.Errorf("got %T, want time.Time", v)
		}
		if tm.Location() != time.UTC || tm.Nanosecond()%int(time.Millisecond) != 0 {
			return fmt.Errorf("time %v is not UTC with millisecond precision", tm)
		}
	case UInt64:
		if _, ok := v.(uint64); !ok {
			return fmt.Errorf("got %T, want uint64", v)
		}
	case Bool:
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("got %T, want bool", v)
		}
	case ArrayString, ArrayLowString:
		s, ok := v.([]string)
		if !ok || s == nil {
			return fmt.Errorf("got %T (%v), want a non-nil []string", v, v)
		}
	case Int64:
		if _, ok := v.(int64); !ok {
			return fmt.Errorf("got %T, want int64", v)
		}
	case NullableTime:
		tm, ok := v.(*time.Time)
		if !ok {
			return fmt.Errorf("got %T, want *time.Time", v)
		}
		if tm != nil && (tm.Location() != time.UTC || tm.Nanosecond()%int(time.Millisecond) != 0) {
			return fmt.Errorf("time %v is not UTC with millisecond precision", *tm)
		}
	case NullableInt64:
		if _, ok := v.(*int64); !ok {
			return fmt.Errorf("got %T, want *int64", v)
		}
	default:
		return fmt.Errorf("column type %d is not used by the mapping", ct)
	}
	return nil
}

func TestMapEvents(t *testing.T) {
	ms := time.Date(2025, 3, 4, 4, 6, 7, 891_000_000, time.UTC)
	tests := []struct {
		name  string
		event source.Event
		opts  Options
		want  map[string]any // events columns
	}{
		{
			name:  "suite invoice with a complete list",
			event: suiteEvent("billing.invoice.generate", `{"accountLocator":"ACC1","invoiceLocator":"INV1","generateTime":"2025-03-04T00:00:00Z","invoiceType":"normal","policyLocators":{"listCompleted":true,"items":["P1","P2"]}}`),
			want: map[string]any{
				"type_class": "invoice", "known_type": true, "timestamp": ms, "parse_error": "",
				"invoice_locator": "INV1", "account_locator": "ACC1", "policy_locator": "",
				"policy_locators": []string{"P1", "P2"}, "policy_locators_complete": true,
				"locator_keys":   []string{"accountLocator", "invoiceLocator"},
				"locator_values": []string{"ACC1", "INV1"},
				"_version":       uint64(1741061167891*2 + 1), "_position": "1741061167891",
				"request_id": "01JREQ00000000000000000001", "flavor": "suite", "tenant": "tenant-a",
			},
		},
		{
			name:  "suite invoice with an incomplete list and no enrichment",
			event: suiteEvent("billing.invoice.generate", `{"accountLocator":"ACC1","invoiceLocator":"INV1","generateTime":"2025-03-04T05:06:07.891Z","invoiceType":"aggregate","policyLocators":{"listCompleted":false,"items":["P1","P2","P3","P4","P5"]}}`),
			want: map[string]any{
				"policy_locators": []string{"P1", "P2", "P3", "P4", "P5"}, "policy_locators_complete": false,
				"_version": uint64(1741061167891 * 2), "parse_error": "",
			},
		},
		{
			name:  "billing facts: invoice type and generation time, JSON with spaces after colons",
			event: suiteEvent("billing.invoice.generate", `{ "accountLocator" : "ACC1", "invoiceLocator": "INV1", "generateTime" :  "2025-03-04T05:06:07.891Z" , "invoiceType" : "aggregate", "policyLocators": {"listCompleted": true, "items": ["P1"]} }`),
			want: map[string]any{
				"invoice_type": "aggregate", "generate_time": ptr(time.Date(2025, 3, 4, 5, 6, 7, 891e6, time.UTC)),
				"generate_time_unix_ms": ptr(int64(1741064767891)), "autopay_time": (*time.Time)(nil), "autopay_time_unix_ms": (*int64)(nil),
				"timestamp_unix_ms": int64(1741061167891), "actor": "2d1c0f5e-0000-4000-8000-000000000001", "parse_error": "",
			},
		},
		{
			name:  "billing facts: autopay time in another zone, read as UTC",
			event: suiteEvent("billing.invoice.autopay", `{"accountLocator":"ACC1","invoiceLocator":"INV1","autopayTime":"2025-03-04T06:06:07.891+01:00","invoiceType":"normal","policyLocators":{"listCompleted":true,"items":["P1"]}}`),
			want: map[string]any{
				"invoice_type": "normal", "autopay_time": ptr(time.Date(2025, 3, 4, 5, 6, 7, 891e6, time.UTC)),
				"autopay_time_unix_ms": ptr(int64(1741064767891)), "generate_time": (*time.Time)(nil), "parse_error": "",
			},
		},
		{
			name:  "billing facts: a time that does not parse is a parse error, the rest is kept",
			event: suiteEvent("billing.invoice.generate", `{"accountLocator":"ACC1","invoiceLocator":"INV1","generateTime":"yesterday","invoiceType":"normal","policyLocators":{"listCompleted":true,"items":["P1"]}}`),
			want: map[string]any{
				"invoice_type": "normal", "generate_time": (*time.Time)(nil), "generate_time_unix_ms": (*int64)(nil),
				"invoice_locator": "INV1", "parse_error": `data.generateTime is "yesterday", not an RFC 3339 date-time`,
			},
		},
		{
			name:  "billing facts: none outside invoice events",
			event: suiteEvent("billing.payment.post", `{"paymentLocator":"PAY","invoiceType":"aggregate","generateTime":"2025-03-04T05:06:07.891Z","policyLocators":{"listCompleted":true,"items":["P1"]}}`),
			want:  map[string]any{"invoice_type": "", "generate_time": (*time.Time)(nil), "generate_time_unix_ms": (*int64)(nil)},
		},
		{
			name:  "classic actor is the username",
			event: classicEvent("policy.issue", `{"policyLocator":"100","policyholderLocator":"9"}`),
			want:  map[string]any{"actor": "alice", "user_locator": "", "timestamp_unix_ms": int64(1741061167891)},
		},
		{
			name:  "suite invoice with an incomplete list completed by enrichment",
			event: suiteEvent("billing.invoice.generate", `{"accountLocator":"ACC1","invoiceLocator":"INV1","generateTime":"2025-03-04T05:06:07.891Z","invoiceType":"aggregate","policyLocators":{"listCompleted":false,"items":["P1","P2","P3","P4","P5"]}}`),
			opts:  Options{FullPolicyLocators: map[string][]string{"01JEVENT0000000000000000001": {"P1", "P2", "P3", "P4", "P5", "P6", "P7"}}},
			want: map[string]any{
				"policy_locators": []string{"P1", "P2", "P3", "P4", "P5", "P6", "P7"}, "policy_locators_complete": true,
				"_version": uint64(1741061167891*2 + 1),
			},
		},
		{
			name:  "suite policy status update",
			event: suiteEvent("policy.status.update", `{"policyLocator":"P9","newStatuses":{"listCompleted":true,"items":["onRisk","inGap"]},"removedStatuses":{"listCompleted":true,"items":["pending"]}}`),
			want: map[string]any{
				"type_class": "policy", "known_type": true, "policy_locator": "P9",
				"new_statuses": []string{"onRisk", "inGap"}, "removed_statuses": []string{"pending"},
				"policy_locators": []string{"P9"}, "policy_locators_complete": true, "parse_error": "",
			},
		},
		{
			name:  "suite transaction",
			event: suiteEvent("policy.cancellation.issue", `{"policyLocator":"P9","transactionLocator":"T1"}`),
			want: map[string]any{
				"type_class": "transaction", "policy_locator": "P9", "transaction_locator": "T1",
				"locator_keys": []string{"policyLocator", "transactionLocator"}, "locator_values": []string{"P9", "T1"},
			},
		},
		{
			name:  "suite document referring to a policy",
			event: suiteEvent("document.ready", `{"documentLocator":"D1","referenceType":"policy","referenceLocator":"P3"}`),
			want: map[string]any{
				"type_class": "document", "document_locator": "D1", "reference_type": "policy",
				"reference_locator": "P3", "policy_locator": "P3", "policy_locators": []string{"P3"},
			},
		},
		{
			name:  "suite FNOL event names its FNOL by locator",
			event: suiteEvent("claim.fnol.create", `{"locator":"F1"}`),
			want: map[string]any{
				"type_class": "claim", "fnol_locator": "F1",
				"locator_keys": []string{"locator"}, "locator_values": []string{"F1"},
			},
		},
		{
			name:  "suite numbering failure of a quote",
			event: suiteEvent("quote.numberAssignmentFailed", `{"entityLocator":"Q7"}`),
			want:  map[string]any{"type_class": "numbering", "quote_locator": "Q7", "known_type": true},
		},
		{
			name:  "classic cancellation",
			event: classicEvent("cancellation.issue", `{"policyLocator":"100000042","policyholderLocator":"100000007","cancellationLocator":"100000099","cancellationName":"lapse"}`),
			want: map[string]any{
				"type_class": "cancellation", "known_type": true, "policy_locator": "100000042",
				"policyholder_locator": "100000007", "cancellation_locator": "100000099",
				"cancellation_name": "lapse", "username": "alice", "request_id": "", "flavor": "classic",
				"policy_locators": []string{"100000042"}, "policy_locators_complete": true, "parse_error": "",
			},
		},
		{
			name:  "classic reminder",
			event: classicEvent("policy.end.reminder", `{"policyLocator":"1","policyholderLocator":"2","reminderName":"expiration30Days"}`),
			want:  map[string]any{"reminder_name": "expiration30Days", "type_class": "policy", "known_type": true},
		},
		{
			name:  "classic sub-claim",
			event: classicEvent("subClaim.create", `{"subClaimLocator":"5","claimLocator":"4","policyLocator":"1","policyholderLocator":"2"}`),
			want:  map[string]any{"sub_claim_locator": "5", "claim_locator": "4", "type_class": "claim"},
		},
		{
			name:  "unknown type keeps every locator",
			event: suiteEvent("widget.frobnicate", `{"widgetLocator":"W1","count":3,"policyLocator":"P1"}`),
			want: map[string]any{
				"type_class": "other", "known_type": false, "parse_error": "", "policy_locator": "P1",
				"locator_keys": []string{"policyLocator", "widgetLocator"}, "locator_values": []string{"P1", "W1"},
				"data": `{"widgetLocator":"W1","count":3,"policyLocator":"P1"}`,
			},
		},
		{
			name:  "escaped strings are decoded",
			event: suiteEvent("policy.quote.create", `{"quote\u004cocator":"Q\u00e9\"1"}`),
			want:  map[string]any{"quote_locator": "Qé\"1", "parse_error": ""},
		},
		{
			name:  "null members read as absent",
			event: suiteEvent("billing.payment.post", `{"paymentLocator":null,"policyLocators":null}`),
			want: map[string]any{
				"payment_locator": "", "parse_error": "", "policy_locators": []string{},
				"policy_locators_complete": true, "locator_keys": []string{},
			},
		},
		{
			name:  "malformed JSON is kept raw",
			event: suiteEvent("policy.quote.create", `{"quoteLocator":"Q1"`),
			want: map[string]any{
				"parse_error": "data is not valid JSON", "data": `{"quoteLocator":"Q1"`,
				"quote_locator": "", "known_type": true,
			},
		},
		{
			name:  "data that is not an object",
			event: suiteEvent("policy.quote.create", ` ["Q1"] `),
			want:  map[string]any{"parse_error": "data is an array, not an object", "data": ` ["Q1"] `},
		},
		{
			name:  "null data",
			event: classicEvent("policy.end", `null`),
			want:  map[string]any{"parse_error": "data is null, not an object"},
		},
		{
			name:  "empty data",
			event: classicEvent("policy.end", ``),
			want:  map[string]any{"parse_error": "data is empty", "data": ""},
		},
		{
			name:  "a member of the wrong type is reported and the rest kept",
			event: suiteEvent("policy.change.issue", `{"policyLocator":42,"transactionLocator":"T1"}`),
			want: map[string]any{
				"parse_error": "data.policyLocator is a number, not a string", "policy_locator": "",
				"transaction_locator": "T1", "locator_keys": []string{"transactionLocator"},
			},
		},
		{
			name:  "a malformed policy list",
			event: suiteEvent("billing.payment.post", `{"paymentLocator":"PAY1","policyLocators":{"items":["P1",7]}}`),
			want: map[string]any{
				"parse_error":              "data.policyLocators.items has a number, not a string; data.policyLocators.listCompleted is missing",
				"policy_locators":          []string{"P1"},
				"policy_locators_complete": false, "payment_locator": "PAY1",
			},
		},
		{
			name: "postgres position is an LSN",
			event: func() source.Event {
				e := suiteEvent("policy.quote.create", `{"quoteLocator":"Q1"}`)
				e.Flavor, e.Seq = source.FlavorPostgres, 0x16B3748_0000_00A0
				return e
			}(),
			want: map[string]any{"_position": "16B3748/A0", "flavor": "postgres", "_version": uint64(0x16B3748_0000_00A0*2 + 1)},
		},
		{
			name: "the top bit of Seq is dropped, not overflowed into the completeness bit",
			event: func() source.Event {
				e := suiteEvent("policy.quote.create", `{"quoteLocator":"Q1"}`)
				e.Seq = 1<<63 | 5
				return e
			}(),
			want: map[string]any{"_version": uint64(11)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rows := NewRows()
			tc.opts.Pipeline = "p1"
			st := Map(source.Batch{Events: []source.Event{tc.event}, Position: "tok"}, tc.opts, rows)
			checkRowTypes(t, rows)
			if st.Events != 1 || rows.ByTable[TableEvents].Len() != 1 {
				t.Fatalf("got %d events and %d rows, want 1 and 1", st.Events, rows.ByTable[TableEvents].Len())
			}
			row := rows.ByTable[TableEvents].Row(0)
			for col, want := range tc.want {
				if got := value(t, TableEvents, row, col); !reflect.DeepEqual(got, want) {
					t.Errorf("%s: got %#v, want %#v", col, got, want)
				}
			}
			if got := value(t, TableEvents, row, "data"); got != string(tc.event.Data) {
				t.Errorf("data: got %q, want the raw %q", got, tc.event.Data)
			}
			if got := value(t, TableEvents, row, "_source"); got != "p1" {
				t.Errorf("_source: got %v, want p1", got)
			}
			wantErr := value(t, TableEvents, row, "parse_error") != ""
			if gotErr := st.ParseErrors == 1; gotErr != wantErr {
				t.Errorf("Stats.ParseErrors: got %d, want parse error %v", st.ParseErrors, wantErr)
			}
			if gotUnknown, wantUnknown := st.Unknown == 1, !KnownType(tc.event.Type); gotUnknown != wantUnknown {
				t.Errorf("Stats.Unknown: got %d, want unknown %v", st.Unknown, wantUnknown)
			}
			if got := st.ByClass[TypeClass(tc.event.Type)]; got != 1 {
				t.Errorf("Stats.ByClass: got %v, want 1 for %s", st.ByClass, TypeClass(tc.event.Type))
			}
		})
	}
}

func TestMapChildRows(t *testing.T) {
	full := map[string][]string{"01JEVENT0000000000000000001": {"P1", "P2", "P3"}}
	tests := []struct {
		name         string
		event        source.Event
		opts         Options
		wantPolicies [][2]any // policy_locator, list_complete
		wantChanges  [][3]any // status, change, list_complete
	}{
		{
			name:         "billing event, one row per listed policy",
			event:        suiteEvent("billing.delinquency.lapse", `{"delinquencyLocator":"DL1","policyLocators":{"listCompleted":true,"items":["P1","P2","P1"]}}`),
			wantPolicies: [][2]any{{"P1", true}, {"P2", true}},
		},
		{
			name:         "incomplete list enriched",
			event:        suiteEvent("billing.payment.post", `{"paymentLocator":"PAY","policyLocators":{"listCompleted":false,"items":["P2"]}}`),
			opts:         Options{FullPolicyLocators: full},
			wantPolicies: [][2]any{{"P1", true}, {"P2", true}, {"P3", true}},
		},
		{
			name:         "incomplete list not enriched",
			event:        suiteEvent("billing.payment.post", `{"paymentLocator":"PAY","policyLocators":{"listCompleted":false,"items":["P2"]}}`),
			wantPolicies: [][2]any{{"P2", false}},
		},
		{
			name:         "status update",
			event:        suiteEvent("policy.status.update", `{"policyLocator":"P9","newStatuses":{"listCompleted":true,"items":["cancelled"]},"removedStatuses":{"listCompleted":false,"items":["onRisk","cancelPending"]}}`),
			wantPolicies: [][2]any{{"P9", true}},
			wantChanges:  [][3]any{{"cancelled", "added", true}, {"onRisk", "removed", false}, {"cancelPending", "removed", false}},
		},
		{
			name:  "status update without a policy has nowhere to go",
			event: suiteEvent("policy.status.update", `{"newStatuses":{"listCompleted":true,"items":["cancelled"]},"removedStatuses":{"listCompleted":true,"items":[]}}`),
		},
		{
			name:  "quote event concerns no policy",
			event: suiteEvent("policy.quote.issue", `{"quoteLocator":"Q1"}`),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rows := NewRows()
			Map(source.Batch{Events: []source.Event{tc.event}}, tc.opts, rows)
			checkRowTypes(t, rows)
			var gotPolicies [][2]any
			for _, r := range rows.ByTable[TableEventPolicies].AllRows() {
				gotPolicies = append(gotPolicies, [2]any{r[epPolicyLocator], r[epListComplete]})
				if r[epEventLocator] != tc.event.Locator || r[epTenant] != tc.event.Tenant || r[epType] != tc.event.Type {
					t.Errorf("event_policies row %v does not name its event", r)
				}
			}
			if !reflect.DeepEqual(gotPolicies, tc.wantPolicies) {
				t.Errorf("event_policies: got %v, want %v", gotPolicies, tc.wantPolicies)
			}
			var gotChanges [][3]any
			for _, r := range rows.ByTable[TablePolicyStatusChanges].AllRows() {
				gotChanges = append(gotChanges, [3]any{r[scStatus], r[scChange], r[scListComplete]})
				if r[scPolicyLocator] != "P9" || r[scEventLocator] != tc.event.Locator {
					t.Errorf("policy_status_changes row %v does not name its policy and event", r)
				}
			}
			if !reflect.DeepEqual(gotChanges, tc.wantChanges) {
				t.Errorf("policy_status_changes: got %v, want %v", gotChanges, tc.wantChanges)
			}
			ev := rows.ByTable[TableEvents].Row(0)
			for _, table := range []string{TableEventPolicies, TablePolicyStatusChanges} {
				for _, r := range rows.ByTable[table].AllRows() {
					if got, want := value(t, table, r, "_version"), ev[evVersion]; got != want {
						t.Errorf("%s._version: got %v, want the event's %v", table, got, want)
					}
				}
			}
		})
	}
}

// TestMapDeterministic checks that mapping the same batch twice gives equal
// rows apart from nothing at all (IngestedAt is an option), so a replay
// collapses onto the first write.
func TestMapDeterministic(t *testing.T) {
	b := source.Batch{Events: sampleEvents(50)}
	opts := Options{Pipeline: "p", IngestedAt: testTime}
	a, c := NewRows(), NewRows()
	Map(b, opts, a)
	Map(b, opts, c)
	if !reflect.DeepEqual(a, c) {
		t.Fatal("two mappings of one batch differ")
	}
	if got := a.ByTable[TableEvents].Row(0)[evIngestedAt]; got != millis(testTime) {
		t.Errorf("_ingested_at: got %v, want %v", got, millis(testTime))
	}
	z := NewRows()
	Map(b, Options{}, z)
	if got, want := z.ByTable[TableEvents].Row(0)[evIngestedAt], time.Unix(0, 0).UTC(); got != want {
		t.Errorf("_ingested_at without IngestedAt: got %v, want %v", got, want)
	}
}

func TestMapAppendsAndCounts(t *testing.T) {
	rows := NewRows()
	b := source.Batch{Events: []source.Event{
		suiteEvent("policy.quote.create", `{"quoteLocator":"Q1"}`),
		suiteEvent("billing.invoice.settle", `{"accountLocator":"A","invoiceLocator":"I","invoiceType":"normal","policyLocators":{"listCompleted":true,"items":["P1"]}}`),
		suiteEvent("no.such.type", `{}`),
		classicEvent("invoice.issue", `{"invoiceLocator":"1","policyLocator":"2","policyholderLocator":"3"}`),
		classicEvent("invoice.issue", `not json`),
	}}
	st := Map(b, Options{}, rows)
	st2 := Map(source.Batch{Events: b.Events[:1]}, Options{}, rows)
	want := Stats{Events: 5, Unknown: 1, ParseErrors: 1, ByClass: map[string]int{"quote": 1, "invoice": 3, "other": 1}, Rejected: map[string]int{}}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("stats: got %+v, want %+v", st, want)
	}
	if st2.Events != 1 {
		t.Errorf("second stats: got %+v, want 1 event", st2)
	}
	if got := rows.ByTable[TableEvents].Len(); got != 6 {
		t.Errorf("events rows after two calls: got %d, want 6", got)
	}
	if got := rows.ByTable[TableEventPolicies].Len(); got != 2 {
		t.Errorf("event_policies rows: got %d, want 2", got)
	}
	if got := rows.Len(); got != 8 {
		t.Errorf("Rows.Len: got %d, want 8", got)
	}
	if st := Map(source.Batch{}, Options{}, rows); st.Events != 0 || rows.Len() != 8 {
		t.Errorf("empty batch: got %+v and %d rows", st, rows.Len())
	}
}

// TestMapRowsAreIndependent checks that rows share no mutable slice: changing
// one row's arrays must not change another's.
func TestMapRowsAreIndependent(t *testing.T) {
	rows := NewRows()
	Map(source.Batch{Events: []source.Event{
		suiteEvent("policy.status.update", `{"policyLocator":"P1","newStatuses":{"listCompleted":true,"items":["onRisk"]},"removedStatuses":{"listCompleted":true,"items":[]}}`),
		suiteEvent("policy.quote.create", `{"quoteLocator":"Q2"}`),
	}}, Options{}, rows)
	rows.ByTable[TableEvents].Row(0)[evLocatorValues].([]string)[0] = "changed"
	for _, col := range []int{evLocatorKeys, evLocatorValues, evPolicyLocators, evNewStatuses} {
		s := rows.ByTable[TableEvents].Row(0)[col].([]string)
		_ = append(s[:len(s):cap(s)], "appended", "appended", "appended", "appended")
		_ = append(s, "appended", "appended", "appended", "appended")
	}
	if got := rows.ByTable[TableEvents].Row(1); !reflect.DeepEqual(got[evLocatorValues], []string{"Q2"}) ||
		!reflect.DeepEqual(got[evLocatorKeys], []string{"quoteLocator"}) || len(got[evPolicyLocators].([]string)) != 0 {
		t.Errorf("second row changed through the first: %v %v %v", got[evLocatorKeys], got[evLocatorValues], got[evPolicyLocators])
	}
}

func TestTypeClass(t *testing.T) {
	tests := []struct{ typ, want string }{
		{"policy.status.update", "policy"},
		{"policy.quote.price", "quote"},
		{"policy.quote.policyNumberRequested", "quote"},
		{"policy.account.create", "account"},
		{"policy.cancellation.issue", "transaction"},
		{"policy.reversal.accept", "transaction"},
		{"policy.numberAssignmentFailed", "numbering"},
		{"billing.invoice.generate", "invoice"},
		{"billing.payment.post", "payment"},
		{"billing.delinquency.delinquencyevent.trigger", "delinquency"},
		{"billing.writeoff.create", "billing"},
		{"claim.fnol.create", "claim"},
		{"producers.producer.create", "producer"},
		{"userAssociation.associated", "user_association"},
		{"policy.end", "policy"},
		{"cancellation.issue", "cancellation"},
		{"invoice.pastDue", "invoice"},
		{"payment.pay", "payment"},
		{"subClaim.create", "claim"},
		{"endorsement.issue", "endorsement"},
		{"renewal.issue", "renewal"},
		{"reinstatement.issue", "reinstatement"},
		{"policyholder.create", "policyholder"},
		{"widget.frobnicate", "other"},
		{"", "other"},
		{"policy", "policy"},
	}
	classes := map[string]bool{}
	for _, c := range Classes {
		classes[c] = true
	}
	for _, tc := range tests {
		if got := TypeClass(tc.typ); got != tc.want {
			t.Errorf("TypeClass(%q): got %q, want %q", tc.typ, got, tc.want)
		}
	}
	for _, typ := range KnownTypes() {
		c := TypeClass(typ)
		if !classes[c] || c == ClassOther {
			t.Errorf("TypeClass(%q) = %q: a known type must have a class of Classes other than %q", typ, c, ClassOther)
		}
	}
}

// TestSuiteTypesFromOpenAPI maps one event of every type of the OpenAPI
// subset (testdata/suite_event_types.json, extracted from the vendor's
// *EventTypeDefinitions) with a payload built from its schema, and checks
// that each is known and read without error, and that every locator member
// lands in locator_keys.
func TestSuiteTypesFromOpenAPI(t *testing.T) {
	var defs map[string]struct {
		Properties map[string]string `json:"properties"`
	}
	readJSON(t, "testdata/suite_event_types.json", &defs)
	if len(defs) < 150 {
		t.Fatalf("got %d suite types from testdata, want the whole OpenAPI list", len(defs))
	}
	for typ, def := range defs {
		data := map[string]any{}
		var wantKeys []string
		for prop, kind := range def.Properties {
			switch {
			case kind == "list":
				data[prop] = map[string]any{"listCompleted": true, "items": []string{"onRisk"}}
			case strings.HasPrefix(kind, "enum:"):
				data[prop] = strings.TrimPrefix(kind, "enum:")
			case strings.HasSuffix(prop, "Time"): // a date-time (OpenAPI format date-time)
				data[prop] = "2025-03-04T05:06:07.891Z"
			default:
				data[prop] = prop + "-value"
				if prop == "locator" || strings.HasSuffix(prop, "Locator") {
					wantKeys = append(wantKeys, prop)
				}
			}
		}
		raw, _ := json.Marshal(data)
		rows := NewRows()
		st := Map(source.Batch{Events: []source.Event{suiteEvent(typ, string(raw))}}, Options{}, rows)
		checkRowTypes(t, rows)
		row := rows.ByTable[TableEvents].Row(0)
		if st.Unknown != 0 || st.ParseErrors != 0 {
			t.Errorf("%s %s: unknown %d, parse error %q", typ, raw, st.Unknown, row[evParseError])
		}
		gotKeys := row[evLocatorKeys].([]string)
		if strings.Join(gotKeys, ",") != strings.Join(sortedCopy(wantKeys), ",") {
			t.Errorf("%s: locator_keys got %v, want %v", typ, gotKeys, sortedCopy(wantKeys))
		}
		if _, ok := def.Properties["policyLocator"]; ok && row[evNamed+idxPolicy] != "policyLocator-value" {
			t.Errorf("%s: policy_locator got %q", typ, row[evNamed+idxPolicy])
		}
		if _, ok := def.Properties["policyLocators"]; ok && !reflect.DeepEqual(row[evPolicyLocators], []string{"onRisk"}) {
			t.Errorf("%s: policy_locators got %v", typ, row[evPolicyLocators])
		}
	}
}

// emulatorTypes are the event types docs/emulator.md says the emulator generates.
var emulatorTypes = map[string][]string{
	source.FlavorSuite: {
		"policy.account.create", "policy.quote.create", "policy.quote.price", "policy.quote.accept",
		"policy.quote.issue", "policy.status.update", "policy.change.create", "policy.change.price",
		"policy.change.issue", "policy.renewal.create", "policy.renewal.price", "policy.renewal.accept",
		"policy.renewal.issue", "policy.cancellation.create", "policy.cancellation.price",
		"policy.cancellation.accept", "policy.cancellation.issue", "billing.invoice.generate",
		"billing.invoice.settle", "billing.payment.create", "billing.payment.post",
		"billing.delinquency.create", "billing.delinquency.settle", "billing.delinquency.lapse",
	},
	source.FlavorClassic: {
		"policy.create", "policy.issue", "endorsement.create", "endorsement.issue", "renewal.create",
		"renewal.issue", "policy.end.reminder", "policy.end", "cancellation.create", "cancellation.issue",
		"invoice.issue", "invoice.pastDue", "policy.gracePeriod", "payment.pay", "claim.create",
		"subClaim.create",
	},
}

func TestEmulatorTypesAreKnown(t *testing.T) {
	for flavor, types := range emulatorTypes {
		for _, typ := range types {
			if !KnownType(typ) {
				t.Errorf("%s type %q is not known", flavor, typ)
			}
		}
	}
}

func TestDefaultSchema(t *testing.T) {
	s := DefaultSchema()
	wantTables := []string{TableEvents, TableEventPolicies, TablePolicyStatusChanges, TableRejects}
	var gotTables []string
	for _, tb := range s.Tables {
		gotTables = append(gotTables, tb.Name)
		if tb.Comment == "" {
			t.Errorf("table %s has no comment", tb.Name)
		}
		cols := map[string]ColumnType{}
		for _, c := range tb.Columns {
			if _, dup := cols[c.Name]; dup {
				t.Errorf("%s.%s: duplicate column", tb.Name, c.Name)
			}
			cols[c.Name] = c.Type
			if c.Comment == "" {
				t.Errorf("%s.%s has no comment", tb.Name, c.Name)
			}
		}
		if cols[tb.Version] != UInt64 {
			t.Errorf("%s: version column %s is not UInt64", tb.Name, tb.Version)
		}
		if tb.Name == TableRejects {
			// Few rows: no partitions; keyed by the raw bytes' hash, since a
			// reject may lack a locator.
			if tb.PartitionBy != "" || tb.OrderBy[len(tb.OrderBy)-1] != "cityHash64(raw)" {
				t.Errorf("%s: PartitionBy %q, ORDER BY %v", tb.Name, tb.PartitionBy, tb.OrderBy)
			}
			continue
		}
		for _, k := range append([]string{tb.Version, "timestamp"}, tb.OrderBy...) {
			if _, ok := cols[k]; !ok {
				t.Errorf("%s: key column %q does not exist", tb.Name, k)
			}
		}
		if tb.PartitionBy != "toYYYYMM(timestamp)" {
			t.Errorf("%s: PartitionBy %q", tb.Name, tb.PartitionBy)
		}
		if last := tb.OrderBy[len(tb.OrderBy)-1]; tb.Name == TableEvents && last != "locator" {
			t.Errorf("events ORDER BY ends in %s, want locator", last)
		}
	}
	if !reflect.DeepEqual(gotTables, wantTables) {
		t.Errorf("tables: got %v, want %v", gotTables, wantTables)
	}
	for _, v := range s.Views {
		readsView := false
		for _, w := range s.Views {
			readsView = readsView || strings.Contains(v.Query, "{db}."+w.Name+"\n")
		}
		if v.Comment == "" || !strings.Contains(v.Query, "{db}.") || !strings.Contains(v.Query, "FINAL") && !readsView {
			t.Errorf("view %s needs a comment and FINAL reads of {db} tables (or reads of views that do)", v.Name)
		}
	}
	s.Tables[0].Columns[0].Name = "changed"
	if DefaultSchema().Tables[0].Columns[0].Name != "locator" {
		t.Error("DefaultSchema returns shared state")
	}
}

// TestColumnPositions checks the position constants Map writes by against
// the column lists.
func TestColumnPositions(t *testing.T) {
	tests := []struct {
		table string
		pos   int
		name  string
	}{
		{TableEvents, evLocator, "locator"},
		{TableEvents, evTenant, "tenant"},
		{TableEvents, evTimestamp, "timestamp"},
		{TableEvents, evParseError, "parse_error"},
		{TableEvents, evNamed + idxPolicy, "policy_locator"},
		{TableEvents, evNamed + idxQuote, "quote_locator"},
		{TableEvents, evNamed + idxTransaction, "transaction_locator"},
		{TableEvents, evNamed + idxInvoice, "invoice_locator"},
		{TableEvents, evNamed + idxPayment, "payment_locator"},
		{TableEvents, evNamed + idxAccount, "account_locator"},
		{TableEvents, evNamed + idxFnol, "fnol_locator"},
		{TableEvents, evNamed + len(namedLocators) - 1, "reference_locator"},
		{TableEvents, evReferenceType, "reference_type"},
		{TableEvents, evLocatorKeys, "locator_keys"},
		{TableEvents, evPolicyLocatorsComplete, "policy_locators_complete"},
		{TableEvents, evReminderName, "reminder_name"},
		{TableEvents, evVersion, "_version"},
		{TableEvents, evIngestedAt, "_ingested_at"},
		{TableEventPolicies, epListComplete, "list_complete"},
		{TableEventPolicies, epIngestedAt, "_ingested_at"},
		{TablePolicyStatusChanges, scStatus, "status"},
		{TablePolicyStatusChanges, scIngestedAt, "_ingested_at"},
		{TableRejects, rjKind, "kind"},
		{TableRejects, rjEventLocator, "event_locator"},
		{TableRejects, rjRaw, "raw"},
		{TableRejects, rjIngestedAt, "_ingested_at"},
	}
	for _, tc := range tests {
		if got := columnIndex(t, tc.table, tc.name); got != tc.pos {
			t.Errorf("%s.%s: at %d, constant says %d", tc.table, tc.name, got, tc.pos)
		}
	}
	counts := map[string]int{TableEvents: evColumnCount, TableEventPolicies: epColumnCount, TablePolicyStatusChanges: scColumnCount, TableRejects: rjColumnCount}
	for _, tb := range DefaultSchema().Tables {
		if got := len(tb.Columns); got != counts[tb.Name] {
			t.Errorf("%s: %d columns, constant says %d", tb.Name, got, counts[tb.Name])
		}
	}
}
