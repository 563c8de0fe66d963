package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/mapping"
	"github.com/tributary-cdc/tributary/pipeline"
	chsink "github.com/tributary-cdc/tributary/sink/clickhouse"
	"github.com/tributary-cdc/tributary/source"
	"github.com/tributary-cdc/tributary/source/eventapi"
)

const benchTenant = "0b6f1c9e-3d2a-4e5f-8a7b-9c0d1e2f3a4b"

// benchEvents is the size of the benchmark's history: TRIBUTARY_BENCH_EVENTS,
// default one million.
func benchEvents(b *testing.B) int {
	if s := os.Getenv("TRIBUTARY_BENCH_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("TRIBUTARY_BENCH_EVENTS=%q is not a positive number", s)
		}
		return n
	}
	return 1_000_000
}

// startEmulator runs `tributary emulate` as its own process with n events and
// returns its base URL once it answers.
func startEmulator(b *testing.B, n int, extra ...string) string {
	b.Helper()
	port := freePort(b)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args := []string{"emulate", "--emulator.flavor", "suite", "--emulator.tenant", benchTenant,
		"--emulator.events", strconv.Itoa(n), "--emulator.policies", strconv.Itoa(max(n/40, 200)),
		"--emulator.seed", "3", "--web.listen-address", addr}
	p := testenv.Start(b, append(args, extra...)...)
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		if err := p.Alive(); err != nil {
			b.Fatal(err)
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return "http://" + addr
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatalf("emulator did not listen on %s within 5 minutes", addr)
	return ""
}

// BenchmarkEndToEndAPI measures `tributary run` replicating a history from
// the emulator (its own process) into ClickHouse, beside the two ceilings
// measured in the same run: the rate at which the API client alone reads the
// pages (no sink), and the rate at which the sink alone writes the same
// events' rows (no source). It reports events/s of each, the ratio of the end
// to end rate to the lower ceiling, and the run's peak RSS. The sink's
// ceiling maps and writes with the run's default batch size and writers. It
// also reports how many cores were busy in each phase and, from that, the
// highest end-to-end rate the machine's CPU allows (see below), and the CPU
// time per event of tributary's own process and of the ClickHouse server in
// the end-to-end phase. It runs once per test-bed server (legacy-18.16,
// modern-26.7).
func BenchmarkEndToEndAPI(b *testing.B) {
	n := benchEvents(b)
	url := startEmulator(b, n)
	testenv.ForEachClickHouse(b, func(b *testing.B, ch *testenv.ClickHouseServer) { benchmarkEndToEndAPI(b, ch, url, n) })
}

func benchmarkEndToEndAPI(b *testing.B, ch *testenv.ClickHouseServer, url string, n int) {
	ctx := context.Background()
	for range b.N {
		// Ceiling 1: the source alone.
		cfg := eventapi.Config{Flavor: "suite", URL: url, Tenant: benchTenant, PageSize: 1000,
			Start: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), End: time.Now()}
		client, err := eventapi.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := client.Open(ctx, ""); err != nil {
			b.Fatal(err)
		}
		var events []source.Event
		cpu0 := testenv.ReadCPU()
		begin := time.Now()
		for {
			batch, err := client.Read(ctx, 10000)
			events = append(events, batch.Events...)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatalf("read: %v", err)
			}
		}
		sourceTime := time.Since(begin)
		sourceCores := testenv.BusyCores(cpu0, testenv.ReadCPU())
		sourceRate := float64(len(events)) / sourceTime.Seconds()
		_ = client.Close(ctx)
		if len(events) < n {
			b.Fatalf("source read %d events, want %d", len(events), n)
		}

		settle(b, ch.Conn)
		// Ceiling 2: the sink alone, the same events' rows.
		sinkDB := testenv.Name("bsink_")
		scfg := chsink.DefaultConfig()
		scfg.Addr, scfg.Database, scfg.Settings = []string{ch.Addr}, sinkDB, ch.Settings
		snk, err := chsink.New(ctx, scfg, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		if err := snk.Ensure(ctx, mapping.DefaultSchema()); err != nil {
			b.Fatal(err)
		}
		// The same batch size and number of concurrent writers as the run's
		// defaults, so that the ceiling is the sink's best, not a strawman.
		pcfg := pipeline.DefaultConfig()
		work := make(chan []source.Event)
		errs := make(chan error, pcfg.Writers)
		cpu0 = testenv.ReadCPU()
		begin = time.Now()
		for range pcfg.Writers {
			go func() {
				for evs := range work {
					rows := mapping.NewRows()
					mapping.Map(source.Batch{Events: evs}, mapping.Options{Pipeline: "bench"}, rows)
					if err := snk.Write(ctx, rows); err != nil {
						errs <- err
						for range work {
						}
						return
					}
				}
				errs <- nil
			}()
		}
		for i := 0; i < len(events); i += pcfg.BatchEvents {
			work <- events[i:min(i+pcfg.BatchEvents, len(events))]
		}
		close(work)
		for range pcfg.Writers {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
		sinkTime := time.Since(begin)
		sinkCores := testenv.BusyCores(cpu0, testenv.ReadCPU())
		sinkRate := float64(len(events)) / sinkTime.Seconds()
		snk.Close()
		_ = ch.Conn.Exec(ctx, "DROP DATABASE IF EXISTS "+sinkDB)
		events = nil
		settle(b, ch.Conn)

		// End to end: the binary, until --api.end is reached.
		runDB := testenv.Name("brun_")
		args := []string{"run", "--source", "api", "--api.url", url, "--api.tenant", benchTenant,
			"--api.start", "2000-01-01T00:00:00Z", "--api.end", time.Now().UTC().Format(time.RFC3339),
			"--pipeline.name", "bench", "--web.listen-address", "", "--log.level", "info"}
		args = append(args, ch.FlagsVia(ch.Addr, runDB)...)
		// TRIBUTARY_BENCH_RUN_ARGS adds flags to the run, for tuning experiments.
		args = append(args, strings.Fields(os.Getenv("TRIBUTARY_BENCH_RUN_ARGS"))...)
		cpu0 = testenv.ReadCPU()
		server0 := ch.CPU()
		begin = time.Now()
		p := testenv.Start(b, args...)
		peak := p.WatchPeakRSS(20 * time.Millisecond)
		e2eRate := float64(n) / time.Since(begin).Seconds()
		e2eCores := testenv.BusyCores(cpu0, testenv.ReadCPU())
		serverTime := ch.CPU() - server0
		if code := p.Wait(b, time.Second); code != 0 {
			b.Fatalf("tributary run exited %d:\n%s", code, p.Output())
		}
		var got uint64
		if err := ch.Conn.QueryRow(ctx, "SELECT count() FROM "+runDB+".events FINAL").Scan(&got); err != nil || got < uint64(n) {
			b.Fatalf("end to end wrote %d events (%v), want %d", got, err, n)
		}
		_ = ch.Conn.Exec(ctx, "DROP DATABASE IF EXISTS "+runDB)
		rss := float64(peak) / (1 << 20)

		b.ReportMetric(sourceRate, "source_events/s")
		b.ReportMetric(sinkRate, "sink_events/s")
		b.ReportMetric(e2eRate, "e2e_events/s")
		b.ReportMetric(e2eRate/min(sourceRate, sinkRate)*100, "%_of_lower_ceiling")
		b.ReportMetric(rss, "peak_rss_MiB")
		reportCPU(b, p.CPU(), serverTime, server0, n)
		reportAllocated(b, p.Output(), n)
		// How busy the machine's cores were in each phase (every process:
		// this one, the emulator, ClickHouse), and the end-to-end rate the
		// CPU allows at most: the core-seconds per event of the two
		// ceilings added up, spread over every core. When both ceilings keep
		// every core busy, the end to end run cannot beat this bound.
		b.ReportMetric(sourceCores, "source_busy_cores")
		b.ReportMetric(sinkCores, "sink_busy_cores")
		b.ReportMetric(e2eCores, "e2e_busy_cores")
		if sourceCores > 0 && sinkCores > 0 {
			perEvent := (sourceCores*sourceTime.Seconds() + sinkCores*sinkTime.Seconds()) / float64(n)
			bound := float64(runtime.NumCPU()) / perEvent
			b.ReportMetric(bound, "cpu_bound_e2e_events/s")
			b.ReportMetric(bound/min(sourceRate, sinkRate)*100, "%_cpu_bound_of_lower_ceiling")
		}
	}
}

// reportCPU reports tributary's own CPU time per event (its process's user +
// system time) and, when known, the ClickHouse server's for the same events
// in the same phase, and their ratio.
func reportCPU(b *testing.B, own, server, server0 time.Duration, n int) {
	perEvent := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) }
	b.ReportMetric(perEvent(own), "tributary_cpu_us/event")
	if server0 >= 0 && server >= 0 {
		b.ReportMetric(perEvent(server), "clickhouse_cpu_us/event")
		if server > 0 {
			b.ReportMetric(own.Seconds()/server.Seconds(), "tributary/clickhouse_cpu")
		}
	}
}

// reportAllocated reports the bytes the run allocated per million events,
// from its summary line.
func reportAllocated(b *testing.B, output string, n int) {
	sum, ok := testenv.RunSummary(output)
	if !ok {
		b.Errorf("the run's output has no summary line with allocated_bytes:\n%.2000s", output)
		return
	}
	b.ReportMetric(float64(sum.AllocatedBytes)/float64(n)*1e6/(1<<20), "tributary_alloc_MiB/Mevents")
	b.ReportMetric(float64(sum.GCCycles), "tributary_gc_cycles")
	if sum.CPUSeconds > 0 {
		b.ReportMetric(sum.GCCPUSeconds/sum.CPUSeconds, "tributary_gc_cpu_share")
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// settle lets the previous phase's work end before the next is timed: this
// process's garbage is collected and returned, and ClickHouse has no merge
// running (up to a minute).
func settle(b *testing.B, conn driver.Conn) {
	b.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		var merges uint64
		if err := conn.QueryRow(context.Background(), "SELECT count() FROM system.merges").Scan(&merges); err != nil {
			b.Fatalf("system.merges: %v", err)
		}
		if merges == 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
}

// BenchmarkBackfillWAN measures the parallel backfill against a far API:
// the emulator (its own process) adds 100 ms to every answer, and
// `tributary run --api.end now` replicates 200,000 events (TRIBUTARY_BENCH_WAN_EVENTS)
// in pages of 1000 into the modern ClickHouse, in four runs of the same
// history: sequential (--api.backfill-concurrency 1), parallel (the
// defaults: 8 windows at once, a budget of 16 requests), parallel with
// --enrich.policy-locators (with the default budget, and with a budget of
// 64 requests, 48 for look-ups), and, as the local CPU-bound reference, the
// parallel run against a second emulator without the latency. It reports
// the sequential ceiling (page size ÷ latency), each run's events/s, their
// ratios, each run's peak RSS and tributary's CPU seconds per million
// events.
func BenchmarkBackfillWAN(b *testing.B) {
	n := 200_000
	if s := os.Getenv("TRIBUTARY_BENCH_WAN_EVENTS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			b.Fatalf("TRIBUTARY_BENCH_WAN_EVENTS=%q is not a positive number", s)
		}
		n = v
	}
	const latency = 100 * time.Millisecond
	far := startEmulator(b, n, "--fault.latency", latency.String())
	near := startEmulator(b, n)
	testenv.ForEachClickHouse(b, func(b *testing.B, ch *testenv.ClickHouseServer) {
		if !strings.HasPrefix(ch.Leg, "modern") {
			b.Skip("the backfill's rate is the source's: one ClickHouse is enough")
		}
		for range b.N {
			run := func(name, url string, extra ...string) (rate, rss, cpuPerM float64) {
				settle(b, ch.Conn)
				db := testenv.Name("bwan_")
				args := []string{"run", "--source", "api", "--api.url", url, "--api.tenant", benchTenant,
					"--api.start", "2000-01-01T00:00:00Z", "--api.end", "now", "--api.page-size", "1000",
					"--pipeline.name", "bench", "--web.listen-address", "", "--log.level", "warn"}
				args = append(append(args, ch.FlagsVia(ch.Addr, db)...), extra...)
				begin := time.Now()
				p := testenv.Start(b, args...)
				peak := p.WatchPeakRSS(20 * time.Millisecond)
				took := time.Since(begin)
				if code := p.Wait(b, time.Second); code != 0 {
					b.Fatalf("%s: tributary run exited %d:\n%s", name, code, p.Output())
				}
				var got uint64
				if err := ch.Conn.QueryRow(context.Background(), "SELECT count() FROM "+db+".events FINAL").Scan(&got); err != nil || got < uint64(n) {
					b.Fatalf("%s wrote %d events (%v), want %d", name, got, err, n)
				}
				_ = ch.Conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
				rate = float64(n) / took.Seconds()
				rss = float64(peak) / (1 << 20)
				cpuPerM = p.CPU().Seconds() / float64(n) * 1e6
				b.Logf("%s: %d events in %s, %.0f events/s, peak RSS %.0f MiB, %.1f CPU s per million events", name, n, took.Round(time.Millisecond), rate, rss, cpuPerM)
				return rate, rss, cpuPerM
			}
			ceiling := 1000 / latency.Seconds()
			seq, seqRSS, _ := run("sequential", far, "--api.backfill-concurrency", "1")
			par, parRSS, parCPU := run("parallel", far)
			enr, enrRSS, enrCPU := run("parallel+enrich", far, "--enrich.policy-locators")
			// Look-ups are one request each, made at most --enrich.concurrency
			// at a time: the same run with a budget of 64 requests, 48 of
			// them for look-ups, shows how the rate with enrichment follows it.
			enr64, _, _ := run("parallel+enrich, budget 64", far, "--enrich.policy-locators", "--api.max-concurrency", "64", "--enrich.concurrency", "48")
			local, _, localCPU := run("local (no latency)", near)
			b.ReportMetric(ceiling, "seq_ceiling_events/s")
			b.ReportMetric(seq, "seq_events/s")
			b.ReportMetric(par, "par_events/s")
			b.ReportMetric(par/ceiling, "par/ceiling")
			b.ReportMetric(enr, "enrich_events/s")
			b.ReportMetric(enr/par*100, "%_enrich_of_par")
			b.ReportMetric(enr64, "enrich64_events/s")
			b.ReportMetric(enr64/par*100, "%_enrich64_of_par")
			b.ReportMetric(local, "local_events/s")
			b.ReportMetric(max(seqRSS, parRSS, enrRSS), "peak_rss_MiB")
			b.ReportMetric(parCPU, "par_cpu_s/Mevents")
			b.ReportMetric(enrCPU, "enrich_cpu_s/Mevents")
			b.ReportMetric(localCPU, "local_cpu_s/Mevents")
		}
	})
}
