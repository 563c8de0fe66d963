package mapping_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/mapping"
	"github.com/tributary-cdc/tributary/sink/clickhouse"
	"github.com/tributary-cdc/tributary/source"
)

// TestSchemaOnClickHouse creates DefaultSchema with the real sink on each
// test server (18.16 and 26.7), writes mapped events of both flavors, replays
// them, and checks deduplication, enrichment, policy_current_status and
// policy_endings (the other views: semantics_test.go, book_test.go).
func TestSchemaOnClickHouse(t *testing.T) {
	testenv.ForEachClickHouse(t, testSchemaOnClickHouse)
}

func testSchemaOnClickHouse(t *testing.T, ch *testenv.ClickHouseServer) {
	ctx := testenv.Context(t, 2*time.Minute)
	cfg := clickhouse.DefaultConfig()
	cfg.Addr = []string{ch.Addr}
	cfg.Database = ch.Database
	cfg.Settings = ch.Settings
	s, err := clickhouse.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open sink: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Ensure(ctx, mapping.DefaultSchema()); err != nil {
		t.Fatalf("create the schema on ClickHouse %s: %v", s.ServerVersion(), err)
	}

	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	n := 0
	ev := func(flavor, tenant, typ string, at time.Duration, data string) source.Event {
		n++
		ts := base.Add(at)
		return source.Event{
			Locator: fmt.Sprintf("01JE%022d", n), Tenant: tenant, Type: typ, Timestamp: ts,
			Data: json.RawMessage(data), Flavor: flavor, Seq: uint64(ts.UnixMilli()),
		}
	}
	suite := func(typ string, at time.Duration, data string) source.Event {
		return ev(source.FlavorSuite, "T", typ, at, data)
	}
	classic := func(typ string, at time.Duration, data string) source.Event {
		return ev(source.FlavorClassic, "C", typ, at, data)
	}
	status := func(policy string, at time.Duration, added, removed string) source.Event {
		return suite("policy.status.update", at, fmt.Sprintf(
			`{"policyLocator":%q,"newStatuses":{"listCompleted":true,"items":[%s]},"removedStatuses":{"listCompleted":true,"items":[%s]}}`,
			policy, added, removed))
	}
	lapse := func(at time.Duration, policies string) source.Event {
		return suite("billing.delinquency.lapse", at, `{"delinquencyLocator":"D","policyLocators":{"listCompleted":true,"items":[`+policies+`]}}`)
	}
	cancel := func(policy string, at time.Duration) source.Event {
		return suite("policy.cancellation.issue", at, fmt.Sprintf(`{"policyLocator":%q,"transactionLocator":"TX"}`, policy))
	}
	h, ms := time.Hour, time.Millisecond
	events := []source.Event{
		status("P1", 0, `"pending"`, ``),
		status("P1", h, `"onRisk"`, `"pending"`),
		status("P1", 2*h, `"expired"`, `"onRisk"`),
		status("P2", 0, `"onRisk","delinquent"`, ``),
		cancel("P2", 3*h),
		status("P2", 3*h+1*ms, `"cancelled"`, `"onRisk"`),
		lapse(4*h, `"P3","P4"`),
		cancel("P3", 4*h+time.Second),
		lapse(0, `"P5"`),
		cancel("P5", 72*h),
		// Two changes in one second: on 18.x only the event locator orders them.
		status("P6", 5*h+100*ms, `"onRisk"`, ``),
		status("P6", 5*h+900*ms, `"cancelled"`, `"onRisk"`),
		// A manual cancellation, then within the same second a lapse naming
		// the policy: whole seconds called it a lapse on 18.x.
		cancel("P8", 7*h+100*ms),
		lapse(7*h+600*ms, `"P8"`),
		classic("policy.end", 0, `{"policyLocator":"100","policyholderLocator":"9"}`),
		classic("cancellation.issue", h, `{"policyLocator":"101","policyholderLocator":"9","cancellationLocator":"1","cancellationName":"lapse"}`),
		classic("cancellation.issue", h, `{"policyLocator":"102","policyholderLocator":"9","cancellationLocator":"2","cancellationName":"insuredRequest"}`),
		classic("policy.lapse", 2*h, `{"policyLocator":"103","policyholderLocator":"9"}`),
		classic("policy.end.reminder", 2*h, `{"policyLocator":"104","policyholderLocator":"9","reminderName":"expiration7Days"}`),
		suite("billing.payment.post", 6*h, `{"paymentLocator":"PAY","policyLocators":{"listCompleted":false,"items":["P1","P2"]}}`),
		suite("no.such.type", 6*h, `not json`),
		// Recent, so that "the last 30 days" finds it; its list stays partial.
		suite("billing.invoice.generate", time.Since(base).Truncate(h)-h, `{"accountLocator":"A","invoiceLocator":"I","generateTime":"2025-03-04T05:06:07.891Z","invoiceType":"aggregate","policyLocators":{"listCompleted":false,"items":["P1","P2","P3","P4","P5"]}}`),
	}
	payment := events[len(events)-3].Locator
	write := func(opts mapping.Options) {
		t.Helper()
		rows := mapping.NewRows()
		mapping.Map(source.Batch{Events: events}, opts, rows)
		if err := s.Write(ctx, rows); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	write(mapping.Options{Pipeline: "p", IngestedAt: base})
	write(mapping.Options{Pipeline: "p", IngestedAt: base.Add(h)}) // a replay
	write(mapping.Options{Pipeline: "p", IngestedAt: base.Add(2 * h), FullPolicyLocators: map[string][]string{payment: {"P1", "P2", "P7"}}})
	write(mapping.Options{Pipeline: "p", IngestedAt: base.Add(3 * h)}) // a replay without enrichment must not undo it

	conn := ch.Conn
	count := func(q string) uint64 {
		t.Helper()
		var c uint64
		if err := conn.QueryRow(ctx, q).Scan(&c); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return c
	}
	if got := count("SELECT count() FROM events FINAL WHERE policy_locators_complete = 0"); got != 1 {
		t.Errorf("events with a partial policy list: got %d, want 1", got)
	}
	if got, want := count("SELECT count() FROM events FINAL"), uint64(len(events)); got != want {
		t.Errorf("events after replays: got %d, want %d", got, want)
	}
	if got := count("SELECT count() FROM events FINAL WHERE parse_error != '' AND known_type = 0 AND data = 'not json'"); got != 1 {
		t.Errorf("unparsable event of unknown type: got %d rows, want 1", got)
	}
	if got := count("SELECT count() FROM events FINAL WHERE locator = '" + payment + "' AND policy_locators_complete = 1 AND length(policy_locators) = 3"); got != 1 {
		t.Errorf("enriched payment: got %d complete rows, want 1", got)
	}
	if got := count("SELECT count() FROM event_policies FINAL WHERE event_locator = '" + payment + "' AND list_complete = 1"); got != 3 {
		t.Errorf("enriched payment: got %d complete event_policies rows, want 3", got)
	}
	if got := count("SELECT count() FROM policy_status_changes FINAL"); got != 12 {
		t.Errorf("policy_status_changes: got %d, want 12", got)
	}

	type current struct {
		Policy   string
		Statuses []string
	}
	var gotStatus []current
	rs, err := conn.Query(ctx, "SELECT policy_locator, statuses FROM policy_current_status WHERE tenant = 'T' ORDER BY policy_locator")
	if err != nil {
		t.Fatalf("query policy_current_status: %v", err)
	}
	for rs.Next() {
		var c current
		if err := rs.Scan(&c.Policy, &c.Statuses); err != nil {
			t.Fatal(err)
		}
		gotStatus = append(gotStatus, c)
	}
	rs.Close()
	wantStatus := []current{
		{"P1", []string{"expired"}},
		{"P2", []string{"cancelled", "delinquent"}},
		{"P6", []string{"cancelled"}},
	}
	if !reflect.DeepEqual(gotStatus, wantStatus) {
		t.Errorf("policy_current_status: got %v, want %v", gotStatus, wantStatus)
	}

	var lastChange time.Time
	var listsComplete uint8
	if err := conn.QueryRow(ctx, "SELECT last_change_at, lists_complete FROM policy_current_status WHERE policy_locator = 'P1'").Scan(&lastChange, &listsComplete); err != nil {
		t.Fatalf("query policy_current_status: %v", err)
	}
	if want := base.Add(2 * h); !lastChange.Equal(want) || listsComplete != 1 {
		t.Errorf("P1 last_change_at, lists_complete: got %v, %d, want %v, 1", lastChange, listsComplete, want)
	}

	var gotEndings [][3]string
	rs, err = conn.Query(ctx, "SELECT tenant, policy_locator, kind FROM policy_endings ORDER BY tenant, policy_locator, kind")
	if err != nil {
		t.Fatalf("query policy_endings: %v", err)
	}
	for rs.Next() {
		var e [3]string
		if err := rs.Scan(&e[0], &e[1], &e[2]); err != nil {
			t.Fatal(err)
		}
		gotEndings = append(gotEndings, e)
	}
	rs.Close()
	wantEndings := [][3]string{
		{"C", "100", "expiry"},
		{"C", "101", "lapse"},
		{"C", "102", "manual_cancellation"},
		{"C", "103", "lapse"},
		{"T", "P1", "expiry"},
		{"T", "P2", "manual_cancellation"},
		{"T", "P3", "lapse"},
		{"T", "P5", "manual_cancellation"},
		{"T", "P8", "manual_cancellation"},
	}
	if !reflect.DeepEqual(gotEndings, wantEndings) {
		t.Errorf("policy_endings:\n got %v\nwant %v", gotEndings, wantEndings)
	}
}
