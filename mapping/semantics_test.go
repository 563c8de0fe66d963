package mapping_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/mapping"
	"github.com/tributary-cdc/tributary/sink/clickhouse"
	"github.com/tributary-cdc/tributary/source"
)

// semBase is where every hand-built history begins; the view queries below
// show times as milliseconds after it.
var semBase = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

// history is a hand-built event history of one tenant and flavor.
type history struct {
	tenant, flavor string
	events         []source.Event
	full           map[string][]string // enriched policy lists by event locator
}

// add appends an event at semBase+at and returns its locator. Events must be
// added in time order: locators sort like the stream's.
func (h *history) add(typ string, at time.Duration, data string) string {
	ts := semBase.Add(at)
	e := source.Event{
		Locator: fmt.Sprintf("%s-%06d", h.tenant, len(h.events)+1), Tenant: h.tenant, Type: typ,
		Timestamp: ts, Data: json.RawMessage(data), Flavor: h.flavor, Seq: uint64(ts.UnixMilli()),
	}
	if h.flavor == source.FlavorClassic {
		e.Username = "alice"
	} else {
		e.UserLocator = "2d1c0f5e-0000-4000-8000-000000000001"
	}
	h.events = append(h.events, e)
	return e.Locator
}

func quoted(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ",")
}

func (h *history) status(p string, at time.Duration, added, removed []string) {
	h.add("policy.status.update", at, fmt.Sprintf(
		`{"policyLocator":%q,"newStatuses":{"listCompleted":true,"items":[%s]},"removedStatuses":{"listCompleted":true,"items":[%s]}}`,
		p, quoted(added), quoted(removed)))
}

func (h *history) txn(typ, p string, at time.Duration) {
	h.add(typ, at, fmt.Sprintf(`{"policyLocator":%q,"transactionLocator":"TX-%s"}`, p, p))
}

func (h *history) billing(typ, key, loc string, at time.Duration, pols []string, extra string) string {
	return h.add(typ, at, fmt.Sprintf(`{%q:%q,%s"policyLocators":{"listCompleted":true,"items":[%s]}}`, key, loc, extra, quoted(pols)))
}

func (h *history) classic(typ, p string, at time.Duration, extra string) {
	h.add(typ, at, fmt.Sprintf(`{%s"policyLocator":%q,"policyholderLocator":"H1"}`, extra, p))
}

func l(s ...string) []string { return s }

// ms renders a duration after semBase as the views' x_unix_ms - semBase.
func ms(d time.Duration) string { return fmt.Sprint(d.Milliseconds()) }

// viewQueries are the queries the semantics tests check, per view, with
// %s standing for the tenant; times are shown as ms after semBase.
var viewQueries = map[string]string{
	"intervals": `SELECT policy_locator, status, valid_from_unix_ms - %[2]d, valid_to_unix_ms - %[2]d
		FROM policy_status_intervals WHERE tenant = '%[1]s' ORDER BY policy_locator, valid_from_unix_ms, status`,
	"current": `SELECT policy_locator, statuses FROM policy_current_status WHERE tenant = '%[1]s' ORDER BY policy_locator`,
	"endings": `SELECT policy_locator, kind, recorded_at_unix_ms - %[2]d FROM policy_endings
		WHERE tenant = '%[1]s' ORDER BY policy_locator, recorded_at_unix_ms`,
	"policies": `SELECT policy_locator, issued_at_unix_ms - %[2]d, first_invoice_at_unix_ms - %[2]d, statuses, ending_kind, ended_at_unix_ms - %[2]d
		FROM policies WHERE tenant = '%[1]s' ORDER BY policy_locator`,
	"delinquencies": `SELECT delinquency_locator, policy_locators, started_at_unix_ms - %[2]d, outcome, outcome_at_unix_ms - %[2]d
		FROM delinquencies WHERE tenant = '%[1]s' ORDER BY delinquency_locator`,
	"invoices": `SELECT invoice_locator, policy_count, policy_locators_complete, is_aggregate, generated_at_unix_ms - %[2]d, state, settled_at_unix_ms - %[2]d, past_due_at_unix_ms - %[2]d
		FROM invoices WHERE tenant = '%[1]s' ORDER BY invoice_locator`,
}

// semCase is one hand-built history and what each view must show for it:
// rows rendered as their values joined by spaces, NULL for NULL.
type semCase struct {
	name  string
	build func(h *history)
	want  map[string][]string
}

var suiteCases = []semCase{
	{
		name: "natural expiry",
		build: func(h *history) {
			h.status("P", 0, l("pending"), nil)
			h.status("P", time.Hour, l("onRisk"), l("pending"))
			h.status("P", 365*day, l("expired"), l("onRisk"))
		},
		want: map[string][]string{
			"intervals": {"P pending 0 " + ms(time.Hour), "P onRisk " + ms(time.Hour) + " " + ms(365*day), "P expired " + ms(365*day) + " NULL"},
			"current":   {"P [expired]"},
			"endings":   {"P expiry " + ms(365*day)},
			"policies":  {"P 0 NULL [expired] expiry " + ms(365*day)},
		},
	},
	{
		name: "manual cancellation effective later",
		build: func(h *history) {
			h.status("P", 0, l("onRisk"), nil)
			h.txn("policy.cancellation.issue", "P", 10*day)
			h.status("P", 10*day+time.Millisecond, l("cancelPending"), nil)
			h.status("P", 20*day, l("cancelled"), l("onRisk", "cancelPending"))
		},
		want: map[string][]string{
			"intervals": {"P onRisk 0 " + ms(20*day), "P cancelPending " + ms(10*day+time.Millisecond) + " " + ms(20*day), "P cancelled " + ms(20*day) + " NULL"},
			"current":   {"P [cancelled]"},
			"endings":   {"P manual_cancellation " + ms(10*day)},
			"policies":  {"P 0 NULL [cancelled] manual_cancellation " + ms(10*day)},
		},
	},
	{
		name: "lapse after delinquency, a settled and an open one",
		build: func(h *history) {
			h.status("P", 0, l("onRisk"), nil)
			h.status("Q", 0, l("onRisk"), nil)
			h.billing("billing.invoice.generate", "invoiceLocator", "I1", day, l("P", "Q"), `"accountLocator":"A","invoiceType":"normal","generateTime":"2025-01-02T00:00:00.000Z",`)
			h.billing("billing.delinquency.create", "delinquencyLocator", "D1", 30*day, l("P"), "")
			h.billing("billing.delinquency.create", "delinquencyLocator", "D2", 30*day, l("Q"), "")
			h.status("P", 30*day+time.Millisecond, l("delinquent"), nil)
			h.billing("billing.delinquency.settle", "delinquencyLocator", "D2", 35*day, l("Q"), "")
			h.billing("billing.delinquency.create", "delinquencyLocator", "D3", 40*day, l("Q"), "")
			h.billing("billing.delinquency.lapse", "delinquencyLocator", "D1", 45*day, l("P"), "")
			h.txn("policy.cancellation.issue", "P", 45*day+5*time.Millisecond)
			h.status("P", 45*day+10*time.Millisecond, l("cancelled"), l("onRisk", "delinquent"))
		},
		want: map[string][]string{
			"intervals": {
				"P onRisk 0 " + ms(45*day+10*time.Millisecond),
				"P delinquent " + ms(30*day+time.Millisecond) + " " + ms(45*day+10*time.Millisecond),
				"P cancelled " + ms(45*day+10*time.Millisecond) + " NULL",
				"Q onRisk 0 NULL",
			},
			"current":  {"P [cancelled]", "Q [onRisk]"},
			"endings":  {"P lapse " + ms(45*day+5*time.Millisecond)},
			"policies": {"P 0 " + ms(day) + " [cancelled] lapse " + ms(45*day+5*time.Millisecond), "Q 0 " + ms(day) + " [onRisk] NULL NULL"},
			"delinquencies": {
				"D1 [P] " + ms(30*day) + " lapsed " + ms(45*day),
				"D2 [Q] " + ms(30*day) + " settled " + ms(35*day),
				"D3 [Q] " + ms(40*day) + " open NULL",
			},
			"invoices": {"I1 2 1 0 " + ms(day) + " open NULL NULL"},
		},
	},
	{
		name: "reinstatement then a second ending",
		build: func(h *history) {
			h.status("P", 0, l("onRisk"), nil)
			h.txn("policy.cancellation.issue", "P", 10*day)
			h.status("P", 10*day, l("cancelled"), l("onRisk"))
			h.txn("policy.reinstatement.issue", "P", 12*day)
			h.status("P", 12*day+time.Millisecond, l("onRisk"), l("cancelled"))
			h.status("P", 365*day, l("expired"), l("onRisk"))
		},
		want: map[string][]string{
			"intervals": {
				"P onRisk 0 " + ms(10*day),
				"P cancelled " + ms(10*day) + " " + ms(12*day+time.Millisecond),
				"P onRisk " + ms(12*day+time.Millisecond) + " " + ms(365*day),
				"P expired " + ms(365*day) + " NULL",
			},
			"current":  {"P [expired]"},
			"endings":  {"P manual_cancellation " + ms(10*day), "P expiry " + ms(365*day)},
			"policies": {"P 0 NULL [expired] expiry " + ms(365*day)},
		},
	},
	{
		name: "aggregate invoice over twelve policies, completed by enrichment; a settled and an unsettled invoice",
		build: func(h *history) {
			var pols []string
			for i := 1; i <= 12; i++ {
				pols = append(pols, fmt.Sprintf("P%02d", i))
			}
			// generateTime is a minute before the event: the view takes generateTime.
			loc := h.add("billing.invoice.generate", 2*day, `{"accountLocator":"A","invoiceLocator":"I1","generateTime":"2025-01-02T23:59:00.000Z","invoiceType":"aggregate","policyLocators":{"listCompleted":false,"items":[`+quoted(pols[:5])+`]}}`)
			h.full = map[string][]string{loc: pols}
			h.billing("billing.invoice.generate", "invoiceLocator", "I2", 2*day, l("P01"), `"accountLocator":"A","invoiceType":"normal","generateTime":"2025-01-03T00:00:00.000Z",`)
			h.billing("billing.invoice.settle", "invoiceLocator", "I1", 5*day, pols[:5], `"accountLocator":"A","invoiceType":"aggregate",`)
			h.billing("billing.invoice.settle", "invoiceLocator", "I2", 5*day, l("P01"), `"accountLocator":"A","invoiceType":"normal",`)
			h.billing("billing.invoice.unsettle", "invoiceLocator", "I2", 6*day, l("P01"), `"accountLocator":"A","invoiceType":"normal",`)
		},
		want: map[string][]string{
			"invoices": {
				"I1 12 1 1 " + ms(2*day-time.Minute) + " settled " + ms(5*day) + " NULL",
				"I2 1 1 0 " + ms(2*day) + " open NULL NULL",
			},
			"policies": func() []string {
				var out []string
				for i := 1; i <= 12; i++ {
					out = append(out, fmt.Sprintf("P%02d NULL %s [] NULL NULL", i, ms(2*day)))
				}
				return out
			}(),
		},
	},
	{
		name: "a status removed and re-added",
		build: func(h *history) {
			h.status("P", 0, l("onRisk"), nil)
			h.status("P", 5*day, l("delinquent"), nil)
			h.status("P", 6*day, nil, l("delinquent"))
			h.status("P", 7*day, l("onRisk"), nil) // already held: no new interval
			h.status("P", 8*day, l("delinquent"), nil)
		},
		want: map[string][]string{
			"intervals": {"P onRisk 0 NULL", "P delinquent " + ms(5*day) + " " + ms(6*day), "P delinquent " + ms(8*day) + " NULL"},
			"current":   {"P [delinquent onRisk]"},
			"endings":   nil,
			"policies":  {"P 0 NULL [delinquent onRisk] NULL NULL"},
		},
	},
}

var classicCases = []semCase{
	{
		name: "natural expiry",
		build: func(h *history) {
			h.classic("policy.create", "100", 0, "")
			h.classic("policy.issue", "100", time.Hour, "")
			h.classic("policy.end.reminder", "100", 358*day, `"reminderName":"expiration7Days",`)
			h.classic("policy.end", "100", 365*day, "")
		},
		want: map[string][]string{
			"intervals": {"100 onRisk " + ms(time.Hour) + " " + ms(365*day), "100 expired " + ms(365*day) + " NULL"},
			"current":   {"100 [expired]"},
			"endings":   {"100 expiry " + ms(365*day)},
			"policies":  {"100 " + ms(time.Hour) + " NULL [expired] expiry " + ms(365*day)},
		},
	},
	{
		name: "manual cancellation effective later",
		build: func(h *history) {
			h.classic("policy.issue", "100", 0, "")
			h.classic("cancellation.create", "100", 10*day, `"cancellationLocator":"C1","cancellationName":"insuredRequest",`)
			h.classic("cancellation.issue", "100", 10*day+time.Millisecond, `"cancellationLocator":"C1","cancellationName":"insuredRequest",`)
		},
		want: map[string][]string{
			// classic fires no event at the effective date: cancelled from the issue.
			"intervals": {"100 onRisk 0 " + ms(10*day+time.Millisecond), "100 cancelled " + ms(10*day+time.Millisecond) + " NULL"},
			"current":   {"100 [cancelled]"},
			"endings":   {"100 manual_cancellation " + ms(10*day+time.Millisecond)},
			"policies":  {"100 0 NULL [cancelled] manual_cancellation " + ms(10*day+time.Millisecond)},
		},
	},
	{
		name: "lapse after delinquency",
		build: func(h *history) {
			h.classic("policy.issue", "100", 0, "")
			h.classic("invoice.issue", "100", day, `"invoiceLocator":"I1",`)
			h.classic("invoice.issue", "100", 2*day, `"invoiceLocator":"I2",`)
			h.classic("invoice.issue", "100", 2*day+time.Millisecond, `"invoiceLocator":"I3",`)
			h.classic("payment.pay", "100", 3*day, `"paymentLocator":"PAY1","invoiceLocator":"I2",`)
			h.classic("invoice.pastDue", "100", 31*day, `"invoiceLocator":"I1",`)
			h.classic("policy.gracePeriod", "100", 31*day, `"invoiceLocator":"I1",`) // c2-000007
			h.classic("invoice.pastDue", "100", 32*day, `"invoiceLocator":"I3",`)
			h.classic("policy.gracePeriod", "100", 32*day, `"invoiceLocator":"I3",`) // c2-000009
			h.classic("payment.pay", "100", 33*day, `"paymentLocator":"PAY2","invoiceLocator":"I3",`)
			h.classic("cancellation.issue", "100", 45*day, `"cancellationLocator":"C1","cancellationName":"lapse",`)
		},
		want: map[string][]string{
			"intervals": {"100 onRisk 0 " + ms(45*day), "100 cancelled " + ms(45*day) + " NULL"},
			"endings":   {"100 lapse " + ms(45*day)},
			"policies":  {"100 0 " + ms(day) + " [cancelled] lapse " + ms(45*day)},
			"invoices": {
				"I1 1 1 0 " + ms(day) + " open NULL " + ms(31*day),
				"I2 1 1 0 " + ms(2*day) + " settled " + ms(3*day) + " NULL",
				"I3 1 1 0 " + ms(2*day+time.Millisecond) + " settled " + ms(33*day) + " " + ms(32*day),
			},
			"delinquencies": {"c2-000007 [100] " + ms(31*day) + " lapsed " + ms(45*day), "c2-000009 [100] " + ms(32*day) + " settled " + ms(33*day)},
		},
	},
	{
		name: "reinstatement then a second ending",
		build: func(h *history) {
			h.classic("policy.issue", "100", 0, "")
			h.classic("cancellation.issue", "100", 10*day, `"cancellationLocator":"C1","cancellationName":"underwriting",`)
			h.classic("reinstatement.issue", "100", 12*day, `"reinstatementLocator":"R1",`)
			h.classic("cancellation.issue", "100", 100*day, `"cancellationLocator":"C2","cancellationName":"nonPaymentLapse",`)
		},
		want: map[string][]string{
			"intervals": {
				"100 onRisk 0 " + ms(10*day), "100 cancelled " + ms(10*day) + " " + ms(12*day),
				"100 onRisk " + ms(12*day) + " " + ms(100*day), "100 cancelled " + ms(100*day) + " NULL",
			},
			"current":  {"100 [cancelled]"},
			"endings":  {"100 manual_cancellation " + ms(10*day), "100 lapse " + ms(100*day)},
			"policies": {"100 0 NULL [cancelled] lapse " + ms(100*day)},
		},
	},
}

// TestViewSemantics writes hand-built histories of both flavors (each in a
// tenant of its own) through the mapping and the real sink, and checks every
// view's rows for each on both servers.
func TestViewSemantics(t *testing.T) {
	testenv.ForEachClickHouse(t, testViewSemantics)
}

func testViewSemantics(t *testing.T, ch *testenv.ClickHouseServer) {
	ctx := testenv.Context(t, 2*time.Minute)
	s := openSchema(t, ctx, ch)
	type built struct {
		c semCase
		h *history
	}
	var all []built
	var events []source.Event
	full := map[string][]string{}
	for i, group := range [][]semCase{suiteCases, classicCases} {
		flavor := []string{source.FlavorSuite, source.FlavorClassic}[i]
		for j, c := range group {
			h := &history{tenant: fmt.Sprintf("%s%d", flavor[:1], j), flavor: flavor}
			c.build(h)
			all = append(all, built{c, h})
			events = append(events, h.events...)
			for k, v := range h.full {
				full[k] = v
			}
		}
	}
	rows := mapping.NewRows()
	mapping.Map(source.Batch{Events: events}, mapping.Options{Pipeline: "p", FullPolicyLocators: full}, rows)
	if err := s.Write(ctx, rows); err != nil {
		t.Fatal(err)
	}
	for _, b := range all {
		for view, want := range b.c.want {
			q := fmt.Sprintf(viewQueries[view], b.h.tenant, semBase.UnixMilli())
			got := queryRows(t, ctx, ch.Conn, q)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("%s %s, view %s:\n got %q\nwant %q", b.h.flavor, b.c.name, view, got, want)
			}
		}
	}
}

// openSchema opens a sink on ch and ensures DefaultSchema.
func openSchema(t *testing.T, ctx context.Context, ch *testenv.ClickHouseServer) *clickhouse.Sink {
	t.Helper()
	cfg := clickhouse.DefaultConfig()
	cfg.Addr = []string{ch.Addr}
	cfg.Database = ch.Database
	cfg.Settings = ch.Settings
	s, err := clickhouse.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Ensure(ctx, mapping.DefaultSchema()); err != nil {
		t.Fatal(err)
	}
	return s
}

// queryRows runs q and renders each row as its values joined by spaces
// (NULL for NULL, arrays as [a b]).
func queryRows(t *testing.T, ctx context.Context, conn driver.Conn, q string) []string {
	t.Helper()
	rs, err := conn.Query(ctx, q)
	if err != nil {
		t.Fatalf("%s\n%v", q, err)
	}
	defer rs.Close()
	types := rs.ColumnTypes()
	var out []string
	for rs.Next() {
		dst := make([]any, len(types))
		for i, ct := range types {
			dst[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rs.Scan(dst...); err != nil {
			t.Fatalf("%s\n%v", q, err)
		}
		cells := make([]string, len(dst))
		for i, d := range dst {
			v := reflect.ValueOf(d).Elem()
			for v.Kind() == reflect.Pointer {
				if v.IsNil() {
					break
				}
				v = v.Elem()
			}
			if v.Kind() == reflect.Pointer {
				cells[i] = "NULL"
				continue
			}
			cells[i] = fmt.Sprint(v.Interface())
		}
		out = append(out, strings.Join(cells, " "))
	}
	if err := rs.Err(); err != nil {
		t.Fatalf("%s\n%v", q, err)
	}
	return out
}
