package e2e

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/internal/testenv"
)

// benchClusterEvents is the size of the cluster benchmark's history:
// TRIBUTARY_BENCH_CLUSTER_EVENTS, default 300,000 (it is replicated twice).
func benchClusterEvents(b *testing.B) int {
	if s := os.Getenv("TRIBUTARY_BENCH_CLUSTER_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("TRIBUTARY_BENCH_CLUSTER_EVENTS=%q is not a positive number", s)
		}
		return n
	}
	return 300_000
}

// BenchmarkEndToEndCluster measures `tributary run` replicating the
// emulator's history (its own process) into the test bed's single ClickHouse
// 18.16 and, in the same run, into the cluster tributary_1x2 (one shard, two
// 18.16 replicas on the same machine, --clickhouse.cluster, both addresses
// listed): events/s of each, the cluster's rate as a percentage of the single
// node's, tributary's CPU per event in each, the ClickHouse servers' CPU per
// event (the one server; both replicas together), and how long the second
// replica took to hold every row after the run ended.
func BenchmarkEndToEndCluster(b *testing.B) {
	n := benchClusterEvents(b)
	single := os.Getenv(testenv.EnvClickHouseAddr)
	if single == "" {
		testenv.Missing(b, "the legacy ClickHouse is missing ("+testenv.EnvClickHouseAddr+" is not set)")
	}
	singlePID, _ := strconv.Atoi(os.Getenv(testenv.EnvClickHousePID))
	c := testenv.Cluster(b, "tributary_1x2")
	url := startEmulator(b, n)
	ctx := context.Background()
	run := func(chFlags []string) (rate float64, own, server time.Duration) {
		b.Helper()
		args := []string{"run", "--source", "api", "--api.url", url, "--api.tenant", benchTenant,
			"--api.start", "2000-01-01T00:00:00Z", "--api.end", time.Now().UTC().Format(time.RFC3339),
			"--pipeline.name", "bench", "--web.listen-address", "", "--log.level", "warn"}
		args = append(args, chFlags...)
		var server0 time.Duration
		servers := func() time.Duration {
			if chFlags[len(chFlags)-1] == c.Name {
				return c.Nodes[0].CPU() + c.Nodes[1].CPU()
			}
			return testenv.ProcessCPU(singlePID)
		}
		server0 = servers()
		begin := time.Now()
		p := testenv.Start(b, args...)
		if code := p.Wait(b, 30*time.Minute); code != 0 {
			b.Fatalf("tributary run exited %d:\n%s", code, p.Output())
		}
		rate = float64(n) / time.Since(begin).Seconds()
		return rate, p.CPU(), servers() - server0
	}
	for range b.N {
		sconn, err := testenv.OpenAddr(single)
		if err != nil {
			b.Fatal(err)
		}
		singleDB := testenv.Name("bsingle_")
		settle(b, sconn)
		singleRate, singleOwn, singleServer := run([]string{"--clickhouse.addr", single, "--clickhouse.database", singleDB})
		var got uint64
		if err := sconn.QueryRow(ctx, "SELECT count() FROM "+singleDB+".events FINAL").Scan(&got); err != nil || got < uint64(n) {
			b.Fatalf("single node: %d events (%v), want %d", got, err, n)
		}
		_ = sconn.Exec(ctx, "DROP DATABASE IF EXISTS "+singleDB)
		sconn.Close()

		a, r := c.Open(b, 0), c.Open(b, 1)
		settle(b, a)
		clusterRate, clusterOwn, clusterServer := run(c.Flags())
		ended := time.Now()
		c.SyncReplicas(b, r)
		catchUp := time.Since(ended)
		var onA, onB uint64
		if err := a.QueryRow(ctx, "SELECT count() FROM "+c.Database+".events FINAL").Scan(&onA); err != nil || onA < uint64(n) {
			b.Fatalf("replica a: %d events (%v), want %d", onA, err, n)
		}
		if err := r.QueryRow(ctx, "SELECT count() FROM "+c.Database+".events FINAL").Scan(&onB); err != nil || onB < uint64(n) {
			b.Fatalf("replica b: %d events (%v), want %d", onB, err, n)
		}

		perEvent := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) }
		b.ReportMetric(singleRate, "single_e2e_events/s")
		b.ReportMetric(clusterRate, "cluster_1x2_e2e_events/s")
		b.ReportMetric(clusterRate/singleRate*100, "%_cluster_of_single")
		b.ReportMetric(perEvent(singleOwn), "single_tributary_cpu_us/event")
		b.ReportMetric(perEvent(clusterOwn), "cluster_tributary_cpu_us/event")
		if singlePID != 0 {
			b.ReportMetric(perEvent(singleServer), "single_clickhouse_cpu_us/event")
		}
		b.ReportMetric(perEvent(clusterServer), "cluster_clickhouse_cpu_us/event")
		b.ReportMetric(catchUp.Seconds(), "replica_catchup_s")
	}
}
