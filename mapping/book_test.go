package mapping_test

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/emulator"
	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/mapping"
	"github.com/tributary-cdc/tributary/source"
	"github.com/tributary-cdc/tributary/source/eventapi"
)

// TestEmulatorBookViews generates an emulated book of each flavor, completes
// the suite's partial policy lists through the emulator's billing look-ups
// (as --enrich.policy-locators does), writes it through the mapping and the
// sink, and checks the entity views against a computation in Go from the raw
// events: every policy's current statuses, issue time and ending, every
// delinquency's outcome, every invoice's policies, kind and state.
func TestEmulatorBookViews(t *testing.T) {
	testenv.ForEachClickHouse(t, testEmulatorBookViews)
}

func testEmulatorBookViews(t *testing.T, ch *testenv.ClickHouseServer) {
	ctx := testenv.Context(t, 3*time.Minute)
	s := openSchema(t, ctx, ch)
	var all []source.Event
	full := map[string][]string{}
	for _, flavor := range []string{emulator.FlavorSuite, emulator.FlavorClassic} {
		emu, err := emulator.New(emulator.Config{Flavor: flavor, Seed: 14, Events: 8000, Policies: 150, Token: "tk"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { emu.Close() })
		var events []source.Event
		for _, e := range emu.Events() {
			events = append(events, source.Event{
				Locator: e.Locator, RequestID: e.RequestID, UserLocator: e.UserLocator, Username: e.Username,
				Tenant: e.Tenant, Type: e.Type, Timestamp: e.Timestamp, Data: e.Data, Flavor: flavor,
				Seq: uint64(e.Timestamp.UnixMilli()),
			})
		}
		if flavor == emulator.FlavorSuite {
			srv := httptest.NewServer(emu.Handler())
			t.Cleanup(srv.Close)
			enr, err := eventapi.NewEnricher(eventapi.Config{Flavor: flavor, URL: srv.URL, Tenant: emu.Tenant(), Token: "tk",
				Start: emu.Config().Start, RequestTimeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			got, err := enr.Complete(ctx, events)
			if err != nil {
				t.Fatalf("enrichment: %v", err)
			}
			for k, v := range got {
				full[k] = v
			}
		}
		all = append(all, events...)
	}
	// One batch: one part per month and table, which 18.16 drops quickly.
	rows := mapping.NewRows()
	mapping.Map(source.Batch{Events: all}, mapping.Options{Pipeline: "p", FullPolicyLocators: full}, rows)
	if err := s.Write(ctx, rows); err != nil {
		t.Fatal(err)
	}

	want := computeBook(t, all, full)
	t.Logf("%d events, %d policy lists completed by enrichment", len(all), len(full))
	for _, c := range []struct {
		what string
		q    string
		want []string
	}{
		{"policies", `SELECT tenant, policy_locator, statuses, issued_at_unix_ms, ending_kind, ended_at_unix_ms FROM policies ORDER BY tenant, policy_locator`, want.policies},
		{"delinquencies", `SELECT tenant, delinquency_locator, flavor, length(policy_locators), started_at_unix_ms, outcome, outcome_at_unix_ms FROM delinquencies ORDER BY tenant, delinquency_locator`, want.delinquencies},
		{"invoices", `SELECT tenant, invoice_locator, policy_count, is_aggregate, state FROM invoices ORDER BY tenant, invoice_locator`, want.invoices},
	} {
		got := queryRows(t, ctx, ch.Conn, c.q)
		t.Logf("%s: %d rows from the view, %d computed", c.what, len(got), len(c.want))
		if len(c.want) < 20 {
			t.Fatalf("%s: the book has only %d; the test needs a larger one", c.what, len(c.want))
		}
		if diff := firstDifference(got, c.want); diff != "" {
			t.Errorf("%s: %d rows, want %d; %s", c.what, len(got), len(c.want), diff)
		}
	}
	// The book must exercise what the views tell apart.
	for _, need := range []string{" lapse ", " manual_cancellation ", " expiry "} {
		if !strings.Contains(strings.Join(want.policies, "\n"), need) {
			t.Errorf("the emulated book has no policy ending in%s", need)
		}
	}
	for _, flavor := range []string{emulator.FlavorSuite, emulator.FlavorClassic} {
		var rows []string
		for _, r := range want.delinquencies {
			if strings.Contains(r, " "+flavor+" ") {
				rows = append(rows, r)
			}
		}
		for _, need := range []string{" lapsed ", " settled "} {
			if !strings.Contains(strings.Join(rows, "\n"), need) {
				t.Errorf("the emulated %s book has no delinquency%s", flavor, need)
			}
		}
	}
	if !strings.Contains(strings.Join(want.invoices, "\n"), " 1 settled") && !strings.Contains(strings.Join(want.invoices, "\n"), " 1 open") {
		t.Errorf("the emulated book has no aggregate invoice")
	}

	// The ten questions of docs/schema.md and every panel of the business
	// dashboard run on this book and answer something.
	doc, err := os.ReadFile("../docs/schema.md")
	if err != nil {
		t.Fatal(err)
	}
	questions := mapping.ExampleQueries(string(doc))
	if len(questions) < 10 {
		t.Errorf("docs/schema.md: %d example queries, want ten", len(questions))
	}
	for i, q := range questions {
		if rows := queryRows(t, ctx, ch.Conn, q); len(rows) == 0 {
			t.Errorf("docs/schema.md question %d returned no rows on the book:\n%s", i+1, q)
		}
	}
	panels := dashboardQueries(t, "../docs/grafana/business.json")
	if len(panels) < 5 {
		t.Errorf("business.json: %d panel queries, want at least 5", len(panels))
	}
	for title, q := range panels {
		// The data source plugin's macro, expanded as it does, over a range
		// that covers the book.
		q = timeFilter.ReplaceAllString(q, "$1 >= toDateTime(1704067200) AND $1 <= toDateTime(1830297600)")
		if rows := queryRows(t, ctx, ch.Conn, q); len(rows) == 0 {
			t.Errorf("business.json panel %q returned no rows on the book:\n%s", title, q)
		}
	}
}

// timeFilter matches the ClickHouse data source's $__timeFilter(column) macro.
var timeFilter = regexp.MustCompile(`\$__timeFilter\(([a-z_]+)\)`)

// dashboardQueries returns the SQL of every panel target of a Grafana
// dashboard, by panel title, checking that each uses the ClickHouse data
// source in SQL mode and names no database (the data source's default
// database is tributary's).
func dashboardQueries(t *testing.T, path string) map[string]string {
	t.Helper()
	var dash struct {
		Panels []struct {
			Title      string `json:"title"`
			Datasource struct {
				Type string `json:"type"`
			} `json:"datasource"`
			Targets []struct {
				EditorType string `json:"editorType"`
				RawSQL     string `json:"rawSql"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out := map[string]string{}
	for _, p := range dash.Panels {
		if p.Datasource.Type != "grafana-clickhouse-datasource" || len(p.Targets) != 1 {
			t.Errorf("%s panel %q: data source %q with %d targets, want grafana-clickhouse-datasource with one", path, p.Title, p.Datasource.Type, len(p.Targets))
			continue
		}
		tg := p.Targets[0]
		if tg.EditorType != "sql" || tg.RawSQL == "" || strings.Contains(tg.RawSQL, "tributary.") {
			t.Errorf("%s panel %q: want raw SQL naming no database, got editor %q:\n%s", path, p.Title, tg.EditorType, tg.RawSQL)
			continue
		}
		out[p.Title] = tg.RawSQL
	}
	return out
}

func firstDifference(got, want []string) string {
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			return fmt.Sprintf("first difference at row %d:\n got %q\nwant %q", i, g, w)
		}
	}
	return ""
}

type bookWant struct{ policies, delinquencies, invoices []string }

// computeBook derives, from the raw events alone, what the views must show.
// It reads payloads with encoding/json and applies the rules docs/schema.md
// states, independently of the views' SQL.
func computeBook(t *testing.T, events []source.Event, full map[string][]string) bookWant {
	t.Helper()
	type list struct {
		ListCompleted bool     `json:"listCompleted"`
		Items         []string `json:"items"`
	}
	type payload struct {
		PolicyLocator      string `json:"policyLocator"`
		PolicyLocators     *list  `json:"policyLocators"`
		NewStatuses        *list  `json:"newStatuses"`
		RemovedStatuses    *list  `json:"removedStatuses"`
		CancellationName   string `json:"cancellationName"`
		DelinquencyLocator string `json:"delinquencyLocator"`
		InvoiceLocator     string `json:"invoiceLocator"`
		InvoiceType        string `json:"invoiceType"`
	}
	sorted := slices.Clone(events)
	slices.SortStableFunc(sorted, func(a, b source.Event) int {
		return cmp.Or(a.Timestamp.Compare(b.Timestamp), strings.Compare(a.Locator, b.Locator))
	})
	type key struct{ tenant, loc string }
	type ending struct {
		ms   int64
		loc  string
		kind string
	}
	type pol struct {
		statuses   map[string]bool
		hasHistory bool
		issued     int64
		reinstated int64
		endings    []ending
	}
	pols := map[key]*pol{}
	getPol := func(k key) *pol {
		p := pols[k]
		if p == nil {
			p = &pol{statuses: map[string]bool{}, issued: -1}
			pols[k] = p
		}
		return p
	}
	type dq struct {
		pols           int
		started        int64
		outcome        string
		outcomeAt      int64
		sawCreate      bool
		firstMs        int64
		bestListLength int
		flavor         string
	}
	dqs := map[key]*dq{}
	type inv struct {
		pols      map[string]bool
		aggregate bool
		state     string
	}
	invs := map[key]*inv{}
	lapses := map[key][][2]string{} // policy → (ms, locator) of billing.delinquency.lapse
	type mark struct {
		ms  int64
		loc string
	}
	type grace struct {
		tenant, loc, policy, invoice string
		ms                           int64
	}
	var graces []grace       // classic policy.gracePeriod
	pays := map[key][]mark{} // classic payment.pay by invoice
	for _, e := range sorted {
		var d payload
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatalf("event %s: %v", e.Locator, err)
		}
		ms := e.Timestamp.UnixMilli()
		var policies []string
		if f, ok := full[e.Locator]; ok {
			policies = append(policies, f...)
		} else if d.PolicyLocators != nil {
			policies = append(policies, d.PolicyLocators.Items...)
		}
		if d.PolicyLocator != "" && !slices.Contains(policies, d.PolicyLocator) {
			policies = append(policies, d.PolicyLocator)
		}
		for _, p := range policies {
			getPol(key{e.Tenant, p}) // every policy an event concerns has a row
		}
		pk := key{e.Tenant, d.PolicyLocator}
		set := func(status string) {
			p := getPol(pk)
			p.hasHistory = true
			p.statuses = map[string]bool{status: true}
		}
		switch e.Type {
		case "policy.status.update":
			p := getPol(pk)
			p.hasHistory = true
			if p.issued < 0 {
				p.issued = ms
			}
			if d.RemovedStatuses != nil {
				for _, s := range d.RemovedStatuses.Items {
					delete(p.statuses, s)
				}
			}
			if d.NewStatuses != nil {
				for _, s := range d.NewStatuses.Items {
					p.statuses[s] = true
					if s == "expired" {
						p.endings = append(p.endings, ending{ms, e.Locator, "expiry"})
					}
				}
			}
		case "policy.issue":
			set("onRisk")
			if p := getPol(pk); p.issued < 0 {
				p.issued = ms
			}
		case "policy.reinstate", "reinstatement.issue":
			set("onRisk")
			getPol(pk).reinstated = ms
		case "policy.reinstatement.issue":
			getPol(pk).reinstated = ms
		case "policy.end":
			set("expired")
			getPol(pk).endings = append(getPol(pk).endings, ending{ms, e.Locator, "expiry"})
		case "cancellation.issue", "policy.cancel", "policy.lapse":
			set("cancelled")
			kind := "manual_cancellation"
			if e.Type == "policy.lapse" || strings.Contains(strings.ToLower(d.CancellationName), "lapse") {
				kind = "lapse"
			}
			if e.Type != "policy.cancel" {
				getPol(pk).endings = append(getPol(pk).endings, ending{ms, e.Locator, kind})
			}
		case "policy.cancellation.issue":
			kind := "manual_cancellation"
			for _, l := range lapses[pk] {
				var lms int64
				fmt.Sscan(l[0], &lms)
				if (lms < ms || lms == ms && l[1] <= e.Locator) && lms+86_400_000 >= ms {
					kind = "lapse"
				}
			}
			getPol(pk).endings = append(getPol(pk).endings, ending{ms, e.Locator, kind})
		}
		switch e.Type {
		case "policy.gracePeriod":
			graces = append(graces, grace{e.Tenant, e.Locator, d.PolicyLocator, d.InvoiceLocator, ms})
		case "payment.pay":
			pays[key{e.Tenant, d.InvoiceLocator}] = append(pays[key{e.Tenant, d.InvoiceLocator}], mark{ms, e.Locator})
		}
		if strings.HasPrefix(e.Type, "billing.delinquency.") && d.DelinquencyLocator != "" &&
			(e.Type == "billing.delinquency.create" || e.Type == "billing.delinquency.settle" || e.Type == "billing.delinquency.lapse") {
			k := key{e.Tenant, d.DelinquencyLocator}
			q := dqs[k]
			if q == nil {
				q = &dq{outcome: "open", firstMs: ms, flavor: e.Flavor}
				dqs[k] = q
			}
			if len(policies) > q.bestListLength {
				q.bestListLength, q.pols = len(policies), len(policies)
			}
			switch e.Type {
			case "billing.delinquency.create":
				if !q.sawCreate {
					q.sawCreate, q.started = true, ms
				}
			case "billing.delinquency.settle":
				q.outcome, q.outcomeAt = "settled", ms
			case "billing.delinquency.lapse":
				q.outcome, q.outcomeAt = "lapsed", ms
				for _, p := range policies {
					pk := key{e.Tenant, p}
					lapses[pk] = append(lapses[pk], [2]string{fmt.Sprint(ms), e.Locator})
				}
			}
		}
		isInvoiceEvent := strings.HasPrefix(e.Type, "billing.invoice.") ||
			slices.Contains([]string{"invoice.issue", "invoice.invalidate", "invoice.pastDue", "invoice.writtenOff", "payment.pay"}, e.Type)
		if isInvoiceEvent && d.InvoiceLocator != "" {
			k := key{e.Tenant, d.InvoiceLocator}
			v := invs[k]
			if v == nil {
				v = &inv{pols: map[string]bool{}, state: "open"}
				invs[k] = v
			}
			if len(policies) > len(v.pols) {
				v.pols = map[string]bool{}
				for _, p := range policies {
					v.pols[p] = true
				}
			}
			v.aggregate = v.aggregate || d.InvoiceType == "aggregate"
			switch e.Type {
			case "billing.invoice.settle", "payment.pay":
				v.state = "settled"
			case "billing.invoice.unsettle":
				v.state = "open"
			case "invoice.invalidate":
				v.state = "invalidated"
			case "invoice.writtenOff":
				v.state = "written_off"
			}
		}
	}

	// A classic grace period is settled by the first payment of its invoice,
	// lapsed by the first lapse of its policy, at or after its start.
	for _, g := range graces {
		first := func(ms []mark) (mark, bool) {
			var best mark
			found := false
			for _, m := range ms {
				if m.ms >= g.ms && (!found || m.ms < best.ms || m.ms == best.ms && m.loc < best.loc) {
					best, found = m, true
				}
			}
			return best, found
		}
		var lapseMarks []mark
		for _, e := range pols[key{g.tenant, g.policy}].endings {
			if e.kind == "lapse" {
				lapseMarks = append(lapseMarks, mark{e.ms, e.loc})
			}
		}
		pay, paid := first(pays[key{g.tenant, g.invoice}])
		lapse, lapsed := first(lapseMarks)
		q := &dq{pols: 1, started: g.ms, sawCreate: true, outcome: "open", flavor: source.FlavorClassic}
		switch {
		case lapsed && (!paid || lapse.ms < pay.ms || lapse.ms == pay.ms && lapse.loc < pay.loc):
			q.outcome, q.outcomeAt = "lapsed", lapse.ms
		case paid:
			q.outcome, q.outcomeAt = "settled", pay.ms
		}
		dqs[key{g.tenant, g.loc}] = q
	}

	var w bookWant
	null := func(ok bool, v int64) string {
		if !ok {
			return "NULL"
		}
		return fmt.Sprint(v)
	}
	keys := func(m map[string]bool) []string {
		out := []string{}
		for k, v := range m {
			if v {
				out = append(out, k)
			}
		}
		slices.Sort(out)
		return out
	}
	for _, k := range sortedKeys(pols) {
		p := pols[k]
		statuses := []string{}
		if p.hasHistory {
			statuses = keys(p.statuses)
		}
		kind, ended := "NULL", "NULL"
		var live []ending
		for _, e := range p.endings {
			if e.ms > p.reinstated {
				live = append(live, e)
			}
		}
		slices.SortFunc(live, func(a, b ending) int { return cmp.Or(cmp.Compare(a.ms, b.ms), strings.Compare(a.loc, b.loc)) })
		if len(live) > 0 {
			kind, ended = live[0].kind, fmt.Sprint(live[0].ms)
		}
		w.policies = append(w.policies, fmt.Sprintf("%s %s %v %s %s %s", k.tenant, k.loc, statuses, null(p.issued >= 0, p.issued), kind, ended))
	}
	for _, k := range sortedKeys(dqs) {
		q := dqs[k]
		started := q.started
		if !q.sawCreate {
			started = q.firstMs
		}
		w.delinquencies = append(w.delinquencies, fmt.Sprintf("%s %s %s %d %d %s %s", k.tenant, k.loc, q.flavor, q.pols, started, q.outcome, null(q.outcome != "open", q.outcomeAt)))
	}
	for _, k := range sortedKeys(invs) {
		v := invs[k]
		agg := 0
		if v.aggregate {
			agg = 1
		}
		w.invoices = append(w.invoices, fmt.Sprintf("%s %s %d %d %s", k.tenant, k.loc, len(v.pols), agg, v.state))
	}
	return w
}

func sortedKeys[V any, K interface{ ~struct{ tenant, loc string } }](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b K) int {
		x, y := struct{ tenant, loc string }(a), struct{ tenant, loc string }(b)
		return cmp.Or(strings.Compare(x.tenant, y.tenant), strings.Compare(x.loc, y.loc))
	})
	return out
}
