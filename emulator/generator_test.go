package emulator

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"testing"
	"time"
)

type listPage struct {
	ListCompleted bool     `json:"listCompleted"`
	Items         []string `json:"items"`
}

type suiteData struct {
	PolicyLocator      string    `json:"policyLocator"`
	InvoiceLocator     string    `json:"invoiceLocator"`
	PaymentLocator     string    `json:"paymentLocator"`
	DelinquencyLocator string    `json:"delinquencyLocator"`
	InvoiceType        string    `json:"invoiceType"`
	PolicyLocators     *listPage `json:"policyLocators"`
	NewStatuses        *listPage `json:"newStatuses"`
	RemovedStatuses    *listPage `json:"removedStatuses"`
}

func decodeData(t *testing.T, e Event, v any) {
	t.Helper()
	if err := json.Unmarshal(e.Data, v); err != nil {
		t.Fatalf("event %s (%s): data %s: %v", e.Locator, e.Type, e.Data, err)
	}
}

func TestGeneratorDeterministic(t *testing.T) {
	for _, fl := range flavors {
		t.Run(fl, func(t *testing.T) {
			a, _ := newTestServer(t, Config{Flavor: fl, Seed: 42, Events: 3000})
			b, _ := newTestServer(t, Config{Flavor: fl, Seed: 42, Events: 1000})
			c, _ := newTestServer(t, Config{Flavor: fl, Seed: 43, Events: 1000})
			b.Append(700)
			b.Append(1300)
			ea, eb := a.Events(), b.Events()
			n := min(len(ea), len(eb))
			if n < 3000 {
				t.Fatalf("only %d events to compare", n)
			}
			if !reflect.DeepEqual(ea[:n], eb[:n]) {
				t.Error("same seed, different chunking: the streams differ")
			}
			if reflect.DeepEqual(ea[:1000], c.Events()[:1000]) {
				t.Error("different seeds gave the same stream")
			}
			if a.Tenant() == c.Tenant() {
				t.Error("different seeds gave the same default tenant")
			}
		})
	}
}

// Several events per request, several users, and the request endpoint
// returns exactly a request's events.
func TestGeneratorRequestsAndUsers(t *testing.T) {
	for _, fl := range flavors {
		t.Run(fl, func(t *testing.T) {
			s, hs := newTestServer(t, Config{Flavor: fl, Seed: 11, Events: 3000})
			byReq := map[string][]string{}
			var order []string
			users := map[string]bool{}
			for _, e := range s.Events() {
				id := e.RequestID + e.TransactionID
				if id == "" {
					t.Fatalf("event %s has neither request nor transaction ID", e.Locator)
				}
				if _, ok := byReq[id]; !ok {
					order = append(order, id)
				}
				byReq[id] = append(byReq[id], e.Locator)
				users[e.UserLocator+e.Username] = true
			}
			multi := 0
			for _, locs := range byReq {
				if len(locs) > 1 {
					multi++
				}
			}
			if multi < len(byReq)/10 {
				t.Errorf("%d of %d requests have several events, want at least a tenth", multi, len(byReq))
			}
			if len(users) < 4 {
				t.Errorf("%d distinct users, want at least 4", len(users))
			}
			if fl != FlavorSuite {
				return
			}
			for _, id := range order[:50] {
				code, body := get(t, hs, "/event/"+s.Tenant()+"/events/request/"+id, nil, "")
				var got []pageEvent
				if code != http.StatusOK || json.Unmarshal(body, &got) != nil {
					t.Fatalf("request %s: %d %s", id, code, body)
				}
				var locs []string
				for _, e := range got {
					locs = append(locs, e.Locator)
				}
				if !slices.Equal(locs, byReq[id]) {
					t.Errorf("request %s: events %v, want %v", id, locs, byReq[id])
				}
			}
		})
	}
}

// policy.status.update: newStatuses/removedStatuses follow from the policy's
// previous statuses.
func TestGeneratorSuiteStatusesFollow(t *testing.T) {
	s, _ := newTestServer(t, Config{Seed: 12, Policies: 300, Events: 60000})
	current := map[string]map[string]bool{}
	seen := map[string]int{}
	terminal := map[string]string{}
	for _, e := range s.Events() {
		var d suiteData
		decodeData(t, e, &d)
		if e.Type != "policy.status.update" {
			if d.PolicyLocator != "" && terminal[d.PolicyLocator] != "" && e.Type != "policy.status.update" {
				t.Errorf("%s for policy %s after it became %s", e.Type, d.PolicyLocator, terminal[d.PolicyLocator])
			}
			continue
		}
		if d.NewStatuses == nil || d.RemovedStatuses == nil || !d.NewStatuses.ListCompleted || !d.RemovedStatuses.ListCompleted {
			t.Fatalf("status update %s: incomplete lists %s", e.Locator, e.Data)
		}
		if len(d.NewStatuses.Items)+len(d.RemovedStatuses.Items) == 0 {
			t.Errorf("status update %s changes nothing", e.Locator)
		}
		if term := terminal[d.PolicyLocator]; term != "" {
			t.Errorf("status update %s for policy %s after it became %s", e.Locator, d.PolicyLocator, term)
		}
		cur := current[d.PolicyLocator]
		if cur == nil {
			cur = map[string]bool{}
			current[d.PolicyLocator] = cur
			if len(d.RemovedStatuses.Items) != 0 || len(d.NewStatuses.Items) != 1 ||
				(d.NewStatuses.Items[0] != "pending" && d.NewStatuses.Items[0] != "onRisk") {
				t.Errorf("first status update of %s: %s, want pending or onRisk alone", d.PolicyLocator, e.Data)
			}
		}
		for _, st := range d.RemovedStatuses.Items {
			if !cur[st] {
				t.Errorf("status update %s removes %s, which policy %s does not have", e.Locator, st, d.PolicyLocator)
			}
			delete(cur, st)
		}
		for _, st := range d.NewStatuses.Items {
			if cur[st] {
				t.Errorf("status update %s adds %s, which policy %s already has", e.Locator, st, d.PolicyLocator)
			}
			cur[st] = true
			seen[st]++
			if st == "expired" || st == "cancelled" {
				terminal[d.PolicyLocator] = st
				if len(cur) != 1 {
					t.Errorf("policy %s is %s but keeps %v", d.PolicyLocator, st, cur)
				}
			}
		}
	}
	for _, st := range statusNames {
		if seen[st.name] == 0 {
			t.Errorf("status %s never set in 60000 events", st.name)
		}
	}
}

// Billing events carry policyLocators cut at five; the look-ups return the
// full list.
func TestGeneratorSuiteBillingPolicyLists(t *testing.T) {
	s, hs := newTestServer(t, Config{Seed: 13, Policies: 200, Events: 30000})
	incomplete := map[string]int{}
	checked := map[string]int{}
	for _, e := range s.Events() {
		var d suiteData
		decodeData(t, e, &d)
		if d.PolicyLocators == nil {
			if len(e.Type) > 8 && e.Type[:8] == "billing." {
				t.Errorf("%s %s has no policyLocators", e.Type, e.Locator)
			}
			continue
		}
		pl := d.PolicyLocators
		if len(pl.Items) > 5 || len(pl.Items) == 0 {
			t.Errorf("%s %s: %d items", e.Type, e.Locator, len(pl.Items))
		}
		kind := e.Type[len("billing.") : len("billing.")+4]
		if !pl.ListCompleted {
			incomplete[kind]++
		} else if checked[kind] > 20 {
			continue // check every incomplete list, and a few complete ones
		}
		checked[kind]++
		full := lookupPolicies(t, s, hs, d)
		if pl.ListCompleted != (len(full) <= 5) {
			t.Errorf("%s %s: listCompleted %v with %d policies in the look-up", e.Type, e.Locator, pl.ListCompleted, len(full))
		}
		for _, it := range pl.Items {
			if !slices.Contains(full, it) {
				t.Errorf("%s %s: item %s missing from the look-up %v", e.Type, e.Locator, it, full)
			}
		}
	}
	for _, k := range []string{"invo", "paym", "deli"} {
		if incomplete[k] == 0 {
			t.Errorf("no %s event with listCompleted false", k)
		}
	}
}

// lookupPolicies completes an event's policy list through the billing look-ups.
func lookupPolicies(t *testing.T, s *Server, hs *httptest.Server, d suiteData) []string {
	t.Helper()
	fetch := func(path string, v any) {
		code, body := get(t, hs, path, nil, "")
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	invoicePolicies := func(loc string) []string {
		var inv struct {
			InvoiceItems []struct {
				PolicyLocator string `json:"policyLocator"`
			} `json:"invoiceItems"`
		}
		fetch("/billing/"+s.Tenant()+"/invoices/"+loc, &inv)
		var out []string
		for _, it := range inv.InvoiceItems {
			out = append(out, it.PolicyLocator)
		}
		return out
	}
	switch {
	case d.InvoiceLocator != "":
		return invoicePolicies(d.InvoiceLocator)
	case d.PaymentLocator != "":
		var pm struct {
			Targets []struct {
				ContainerLocator string `json:"containerLocator"`
				ContainerType    string `json:"containerType"`
			} `json:"targets"`
		}
		fetch("/billing/"+s.Tenant()+"/payments/"+d.PaymentLocator, &pm)
		var out []string
		for _, tg := range pm.Targets {
			if tg.ContainerType == "invoice" {
				out = append(out, invoicePolicies(tg.ContainerLocator)...)
			}
		}
		return out
	case d.DelinquencyLocator != "":
		var dq struct {
			References []struct {
				ReferenceLocator string `json:"referenceLocator"`
				ReferenceType    string `json:"referenceType"`
			} `json:"references"`
		}
		fetch("/billing/"+s.Tenant()+"/delinquencies/"+d.DelinquencyLocator, &dq)
		var out []string
		for _, r := range dq.References {
			if r.ReferenceType == "policy" {
				out = append(out, r.ReferenceLocator)
			}
		}
		return out
	}
	t.Fatalf("billing data without a known locator: %+v", d)
	return nil
}

type classicData struct {
	PolicyLocator    string `json:"policyLocator"`
	CancellationName string `json:"cancellationName"`
	ReminderName     string `json:"reminderName"`
}

// The classic seed's rules: policy.end only on natural expiry;
// cancellation.issue for manual cancellations and lapses (told apart by
// cancellationName), at once even when effective later, nothing at the
// effective date; no policy.end.reminder for a cancelled policy.
func TestGeneratorClassicSeedRules(t *testing.T) {
	s, _ := newTestServer(t, Config{Flavor: FlavorClassic, Seed: 14, Policies: 300, Events: 40000})
	cancelled := map[string]string{} // policy → cancellationName
	pastDue := map[string]bool{}
	ended := map[string]bool{}
	names := map[string]int{}
	counts := map[string]int{}
	// After a cancellation is issued, only billing and claims may still name
	// the policy (until a later effective date).
	allowedAfterCancel := map[string]bool{"invoice.issue": true, "invoice.pastDue": true, "policy.gracePeriod": true,
		"payment.pay": true, "claim.create": true, "subClaim.create": true}
	for _, e := range s.Events() {
		var d classicData
		decodeData(t, e, &d)
		if d.PolicyLocator == "" {
			t.Fatalf("classic event %s (%s) names no policy: %s", e.Locator, e.Type, e.Data)
		}
		counts[e.Type]++
		p := d.PolicyLocator
		if ended[p] && e.Type != "payment.pay" && e.Type != "invoice.pastDue" { // the last invoice may be settled later
			t.Errorf("%s for policy %s after its policy.end", e.Type, p)
		}
		if name, ok := cancelled[p]; ok && !allowedAfterCancel[e.Type] {
			t.Errorf("%s for policy %s after cancellation.issue (%s)", e.Type, p, name)
		}
		switch e.Type {
		case "invoice.pastDue":
			pastDue[p] = true
		case "cancellation.issue":
			names[d.CancellationName]++
			cancelled[p] = d.CancellationName
			if d.CancellationName == cancelLapse && !pastDue[p] {
				t.Errorf("lapse of policy %s without an invoice past due", p)
			}
			if d.CancellationName != cancelLapse && !slices.Contains(manualCancelNames, d.CancellationName) {
				t.Errorf("cancellation.issue %s: unknown cancellationName %q", e.Locator, d.CancellationName)
			}
		case "policy.end":
			ended[p] = true
		case "policy.end.reminder":
			if d.ReminderName == "" {
				t.Errorf("policy.end.reminder %s without reminderName", e.Locator)
			}
		}
	}
	if names[cancelLapse] == 0 || names["insuredRequest"]+names["underwriting"] == 0 {
		t.Errorf("cancellation names %v: want lapses and manual cancellations", names)
	}
	for _, typ := range []string{"policy.end", "policy.end.reminder", "cancellation.issue", "renewal.issue", "endorsement.issue", "payment.pay", "claim.create"} {
		if counts[typ] == 0 {
			t.Errorf("no %s in 40000 classic events", typ)
		}
	}
	if counts["policy.lapse"] != 0 || counts["cancellation.effective"] != 0 {
		t.Errorf("legacy or effective-date events emitted: %v", counts)
	}
	// Future-effective cancellations exist, and were issued at once.
	s.genMu.Lock()
	future := len(s.sim.futureCancels)
	var futurePolicies []string
	for p := range s.sim.futureCancels {
		futurePolicies = append(futurePolicies, p)
	}
	s.genMu.Unlock()
	if future == 0 {
		t.Fatal("no cancellation with a later effective date was generated")
	}
	for _, p := range futurePolicies {
		if _, ok := cancelled[p]; !ok && len(s.Events()) > 0 {
			t.Errorf("future-effective cancellation of %s has no cancellation.issue", p)
		}
	}
}

// TestStartBefore: a history started at StartBefore(now) ends before now,
// and the same seed and start give the same history.
func TestStartBefore(t *testing.T) {
	now := time.Date(2026, 11, 22, 15, 4, 5, 0, time.UTC)
	for _, flavor := range []string{FlavorSuite, FlavorClassic} {
		cfg := Config{Flavor: flavor, Seed: 3, Events: 5000, Policies: 100}
		start := StartBefore(cfg, now)
		if !start.Equal(start.Truncate(24*time.Hour)) || !start.Before(now) {
			t.Errorf("%s: start %s, want a midnight before %s", flavor, start, now)
		}
		cfg.Start = start
		a, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		evs := a.Events()
		a.Close()
		first, last := evs[0].Timestamp, evs[len(evs)-1].Timestamp
		if first.Before(start) || !last.Before(now) || now.Sub(last) > 60*24*time.Hour {
			t.Errorf("%s: history %s to %s with start %s, want it to end shortly before %s", flavor, first, last, start, now)
		}
		b, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		again := b.Events()
		b.Close()
		if len(again) != len(evs) || string(again[len(again)-1].Data) != string(evs[len(evs)-1].Data) || again[len(again)-1].Locator != evs[len(evs)-1].Locator {
			t.Errorf("%s: the same seed and start gave another history", flavor)
		}
	}
}
