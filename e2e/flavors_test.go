package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/emulator"
	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/source"
)

// runToEnd runs tributary with args plus --api.end now, which makes it exit 0
// once it has caught up, and fails the test otherwise.
func runToEnd(t *testing.T, args ...string) {
	t.Helper()
	args = append(args, "--api.end", time.Now().UTC().Format(time.RFC3339))
	p := testenv.Start(t, args...)
	if code := p.Wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("tributary run exited %d:\n%s", code, p.Output())
	}
}

// TestClassicAttributedExact replicates the classic flavor's attributed stream
// (every row carries its username) and compares every table with the
// expected rows.
func TestClassicAttributedExact(t *testing.T) {
	testenv.ForEachClickHouse(t, testClassicAttributedExact)
}

func testClassicAttributedExact(t *testing.T, ch *testenv.ClickHouseServer) {
	emu, err := emulator.New(emulator.Config{Flavor: emulator.FlavorClassic, Seed: 11, Events: 20000, Policies: 500,
		Faults: emulator.FaultConfig{ErrorRate: 0.05, DuplicateRate: 0.2, TruncateRate: 0.03}})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	srv := httptest.NewServer(emu.Handler())
	defer srv.Close()
	args := apiArgs(srv.URL, emu.Tenant(), ch.Flags())
	args = append(args, "--api.flavor", "classic", "--api.attributed")
	runToEnd(t, args...)

	want := emu.Events()
	wantDB := testenv.Name("want_")
	t.Cleanup(func() { _ = ch.Conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+wantDB) })
	writeExpected(t, ch, wantDB, toSource(want, source.FlavorClassic))
	testenv.AssertSameTables(t, ch.Conn, ch.Database, wantDB, tableNames())
	var noUser uint64
	if err := ch.Conn.QueryRow(context.Background(), "SELECT countIf(username = '') FROM "+ch.Database+".events FINAL").Scan(&noUser); err != nil {
		t.Fatal(err)
	}
	if noUser != 0 {
		t.Errorf("%d classic attributed events without a username", noUser)
	}
}

// TestEnrichmentCompletesPolicyLists replicates with --enrich.policy-locators
// and a file checkpoint: every billing event whose list the emulator cut at
// five locators must hold the full list the look-ups return.
func TestEnrichmentCompletesPolicyLists(t *testing.T) {
	testenv.ForEachClickHouse(t, testEnrichmentCompletesPolicyLists)
}

func testEnrichmentCompletesPolicyLists(t *testing.T, ch *testenv.ClickHouseServer) {
	emu, err := emulator.New(emulator.Config{Flavor: emulator.FlavorSuite, Seed: 5, Events: 20000, Policies: 500})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	var lookups atomic.Int64 // billing look-ups the emulator answered
	h := emu.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/billing/") {
			lookups.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	cpFile := filepath.Join(t.TempDir(), "checkpoints.json")
	args := apiArgs(srv.URL, emu.Tenant(), ch.Flags(), "--enrich.policy-locators", "--checkpoint.file", cpFile)
	runToEnd(t, args...)
	first := lookups.Load()
	if first == 0 {
		t.Fatal("the run made no billing look-up: the test proves nothing")
	}
	// A replay of the whole history (no checkpoint): every look-up is in
	// the _tributary_lookups table, so the API is not asked again.
	if err := os.Remove(cpFile); err != nil {
		t.Fatal(err)
	}
	runToEnd(t, args...)
	if again := lookups.Load() - first; again != 0 {
		t.Errorf("the replay made %d billing look-ups (the first run %d); want none: they are stored", again, first)
	}
	t.Logf("billing look-ups: %d in the first run, %d in the replay", first, lookups.Load()-first)

	incomplete := 0
	for _, e := range emu.Events() {
		var d struct {
			PolicyLocators *struct {
				ListCompleted bool     `json:"listCompleted"`
				Items         []string `json:"items"`
			} `json:"policyLocators"`
		}
		if json.Unmarshal(e.Data, &d) == nil && d.PolicyLocators != nil && !d.PolicyLocators.ListCompleted {
			incomplete++
		}
	}
	if incomplete == 0 {
		t.Fatal("the emulator generated no incomplete policy list: the test proves nothing")
	}
	var stillIncomplete, longLists uint64
	q := fmt.Sprintf("SELECT countIf(policy_locators_complete = 0), countIf(length(policy_locators) > 5) FROM %s.events FINAL", ch.Database)
	if err := ch.Conn.QueryRow(context.Background(), q).Scan(&stillIncomplete, &longLists); err != nil {
		t.Fatal(err)
	}
	if stillIncomplete != 0 || longLists < uint64(incomplete)/2 {
		t.Errorf("after enrichment: %d events still incomplete, %d lists longer than five; the emulator cut %d lists", stillIncomplete, longLists, incomplete)
	}
	raw, err := os.ReadFile(cpFile)
	if err != nil {
		t.Fatalf("checkpoint file: %v", err)
	}
	var cps map[string]any
	if err := json.Unmarshal(raw, &cps); err != nil || len(raw) == 0 {
		t.Fatalf("checkpoint file is not JSON (%v): %s", err, raw)
	}
	var inTable uint64
	_ = ch.Conn.QueryRow(context.Background(), "SELECT count() FROM system.tables WHERE database = ? AND name = '_tributary_checkpoints'", ch.Database).Scan(&inTable)
	if inTable != 0 {
		t.Error("with --checkpoint.file the checkpoint table was created anyway")
	}
}
