package clickhouse

import (
	"slices"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/internal/testenv"
)

// TestLookupStore: look-ups put in the table are read back for their
// tenant only, a key put twice (a replay) reads once, an empty list is
// kept as empty, unknown keys are absent, and a second store (a restarted
// process) reads what the first one stored.
func TestLookupStore(t *testing.T) {
	testenv.ForEachClickHouse(t, func(t *testing.T, ch *testenv.ClickHouseServer) {
		ctx := testenv.Context(t, 2*time.Minute)
		cfg := testConfig(ch)
		s := NewLookupStore(cfg, "tenant-a")
		t.Cleanup(func() { s.Close() })
		other := NewLookupStore(cfg, "tenant-b")
		t.Cleanup(func() { other.Close() })

		if got, err := s.Get(ctx, []string{"invoice/x"}); err != nil || len(got) != 0 {
			t.Fatalf("Get before any Put = %v, %v; want nothing (the table is created on first use)", got, err)
		}
		if err := s.Put(ctx, map[string][]string{"invoice/1": {"p1", "p2"}, "payment/2": {}, "delinquency/3": {"p9"}}); err != nil {
			t.Fatalf("Put: %v", err)
		}
		if err := s.Put(ctx, map[string][]string{"invoice/1": {"p1", "p2"}}); err != nil {
			t.Fatalf("second Put: %v", err)
		}
		if err := other.Put(ctx, map[string][]string{"invoice/1": {"q"}}); err != nil {
			t.Fatalf("Put of another tenant: %v", err)
		}

		restarted := NewLookupStore(cfg, "tenant-a")
		t.Cleanup(func() { restarted.Close() })
		got, err := restarted.Get(ctx, []string{"invoice/1", "payment/2", "delinquency/3", "invoice/unknown"})
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		want := map[string][]string{"invoice/1": {"p1", "p2"}, "payment/2": {}, "delinquency/3": {"p9"}}
		if len(got) != len(want) {
			t.Fatalf("Get = %v, want %v", got, want)
		}
		for k, w := range want {
			if g, ok := got[k]; !ok || !slices.Equal(g, w) {
				t.Errorf("Get[%s] = %v (%v), want %v", k, g, ok, w)
			}
		}
	})
}

// TestLookupStoreOnCluster: on a cluster of two shards the look-up table is
// replicated across every node (like the checkpoint table), so a look-up
// stored through one shard's node is read through the other's.
func TestLookupStoreOnCluster(t *testing.T) {
	c := testenv.Cluster(t, "tributary_2x1")
	ctx := testenv.Context(t, 3*time.Minute)
	cfg := DefaultConfig()
	cfg.Database, cfg.Cluster = c.Database, c.Name
	cfg.Addr = []string{c.Nodes[0].Addr}
	first := NewLookupStore(cfg, "t")
	t.Cleanup(func() { first.Close() })
	if err := first.Put(ctx, map[string][]string{"invoice/1": {"p1"}}); err != nil {
		t.Fatalf("Put through node 0: %v", err)
	}
	cfg.Addr = []string{c.Nodes[1].Addr}
	second := NewLookupStore(cfg, "t")
	t.Cleanup(func() { second.Close() })
	c.SyncReplicas(t, c.Open(t, 1))
	got, err := second.Get(ctx, []string{"invoice/1"})
	if err != nil || !slices.Equal(got["invoice/1"], []string{"p1"}) {
		t.Fatalf("Get through node 1 = %v, %v; want the list stored through node 0", got, err)
	}
}
