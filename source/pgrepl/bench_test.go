package pgrepl

import (
	"bufio"
	"context"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/tributary-cdc/tributary/internal/testenv"
)

// benchRows is the size of the throughput benchmark's table.
const benchRows = 200_000

// BenchmarkReadVsRecvlogical decodes the same 200,000 rows (2,000 transactions
// of 100) four times, from four slots created at the same point: twice with
// pg_recvlogical writing pgoutput to /dev/null (the ceiling: the server's
// decoding), twice through Source.Read into events (Open included). It
// reports the better rate of each and their ratio.
func BenchmarkReadVsRecvlogical(b *testing.B) {
	for i := 0; i < b.N; i++ {
		f := newFixture(b)
		ctx := testenv.Context(b, 10*time.Minute)
		recv := recvlogicalPath(b)
		exec(b, f.pg.Conn, "CREATE PUBLICATION "+f.cfg.Publication+" FOR TABLE socotra_events")
		ceilingSlots := []string{f.cfg.Slot + "_c1", f.cfg.Slot + "_c2"}
		sourceSlots := []string{f.cfg.Slot + "_s1", f.cfg.Slot + "_s2"}
		for _, s := range append(ceilingSlots, sourceSlots...) {
			exec(b, f.pg.Conn, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", s)
		}
		for first := 1; first <= benchRows; first += 100 {
			exec(b, f.pg.Conn, insertSQL("socotra_events", first, first+99))
		}
		var endStr string
		if err := f.pg.Conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&endStr); err != nil {
			b.Fatal(err)
		}
		end, _ := pglogrepl.ParseLSN(endStr)
		recvlogical := func(slot string) time.Duration {
			t0 := time.Now()
			cmd := osexec.CommandContext(ctx, recv, "-d", f.pg.DSN, "--slot", slot, "--start", "--no-loop",
				"-o", "proto_version=2", "-o", "streaming=on", "-o", "publication_names="+f.cfg.Publication,
				"-E", endStr, "-f", "/dev/null")
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("pg_recvlogical: %v: %s", err, out)
			}
			return time.Since(t0)
		}
		read := func(slot string) time.Duration {
			cfg := f.cfg
			cfg.Slot = slot
			cfg.Snapshot = false
			cfg.CreateSlot = false
			t0 := time.Now()
			src, err := New(cfg, testLogger(b))
			if err != nil {
				b.Fatal(err)
			}
			if err := src.Open(ctx, ""); err != nil {
				b.Fatal(err)
			}
			defer src.Close(ctx)
			events := 0
			for {
				batch, err := src.Read(ctx, 10000)
				if err != nil {
					b.Fatal(err)
				}
				events += len(batch.Events)
				if err := src.Ack(ctx, batch.Position); err != nil {
					b.Fatal(err)
				}
				if events >= benchRows && lsnOf(b, batch.Position) >= end {
					break
				}
			}
			if events != benchRows {
				b.Fatalf("events: got %d, want %d", events, benchRows)
			}
			return time.Since(t0)
		}

		// Each side runs twice, alternating; the faster run of each counts
		// (the machine is shared, so single runs are noisy).
		b.ResetTimer()
		ceiling := recvlogical(ceilingSlots[0])
		ours := read(sourceSlots[0])
		ceiling = min(ceiling, recvlogical(ceilingSlots[1]))
		ours = min(ours, read(sourceSlots[1]))
		b.StopTimer()
		b.ReportMetric(float64(benchRows)/ceiling.Seconds(), "recvlogical-rows/s")
		b.ReportMetric(float64(benchRows)/ours.Seconds(), "source-rows/s")
		b.ReportMetric(ceiling.Seconds()/ours.Seconds()*100, "%-of-ceiling")
	}
}

func recvlogicalPath(b testing.TB) string {
	for _, dir := range []string{os.Getenv(testenv.EnvPostgresBin), "/usr/lib/postgresql/15/bin"} {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, "pg_recvlogical")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := osexec.LookPath("pg_recvlogical"); err == nil {
		return p
	}
	b.Skip("pg_recvlogical not found")
	return ""
}

// largeTxRows is the size of the one transaction of BenchmarkLargeTransaction.
const largeTxRows = 2_000_000

// BenchmarkLargeTransaction replicates one transaction of two million rows
// (about 250 bytes of JSON each), streamed by the server while in progress
// (protocol v2) and buffered on disk until its commit, and reports the peak
// RSS of the process while reading, which must stay under 300 MiB.
func BenchmarkLargeTransaction(b *testing.B) {
	for i := 0; i < b.N; i++ {
		f := newFixture(b)
		ctx := testenv.Context(b, 20*time.Minute)
		cfg := f.cfg
		cfg.Snapshot = false
		cfg.SpillDir = b.TempDir()
		src := f.open(b, cfg, "")
		pad := strings.Repeat("x", 180)
		q := fmt.Sprintf(`INSERT INTO socotra_events (locator, tenant, flavor, type, occurred_at, data)
			SELECT 'ev-' || lpad(i::text, 9, '0'), 't', 'suite', 'policy.issue', now(),
			       ('{"i": ' || i || ', "pad": "%s"}')::json
			FROM generate_series(1, %d) AS i`, pad, largeTxRows)
		exec(b, f.pg.Conn, q)
		runtimeResetPeak(b)
		b.ResetTimer()
		t0 := time.Now()
		events := 0
		seen := map[uint64]bool{}
		for events < largeTxRows {
			batch, err := src.Read(ctx, 10000)
			if err != nil {
				b.Fatal(err)
			}
			events += len(batch.Events)
			for _, ev := range batch.Events[:min(1, len(batch.Events))] {
				seen[ev.Seq] = true
			}
			if err := src.Ack(ctx, batch.Position); err != nil {
				b.Fatal(err)
			}
		}
		took := time.Since(t0)
		b.StopTimer()
		peak := peakRSS(b)
		if events != largeTxRows || len(seen) != 1 {
			b.Fatalf("events %d (want %d) over %d commits (want 1)", events, largeTxRows, len(seen))
		}
		b.ReportMetric(float64(largeTxRows)/took.Seconds(), "rows/s")
		b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
		if peak > 300<<20 {
			b.Errorf("peak RSS %d MiB, want < 300 MiB", peak>>20)
		}
	}
}

// runtimeResetPeak resets the kernel's peak RSS (VmHWM) of this process.
func runtimeResetPeak(b testing.TB) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("cannot reset VmHWM (%v): the peak includes the setup", err)
	}
}

// peakRSS returns VmHWM of this process, in bytes.
func peakRSS(b testing.TB) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("VmHWM not found")
	return 0
}

// BenchmarkEndToEndPostgres measures `tributary run --source postgres`
// replicating 200,000 rows (2,000 transactions of 100) from its slot into
// ClickHouse (process start to the last row in ClickHouse), beside
// pg_recvlogical decoding the same rows from a slot created at the same point
// (the ceiling). It reports both rates, their ratio, the process's peak RSS,
// and the CPU time per row of tributary's process and of the ClickHouse
// server. It runs once per test-bed server (legacy-18.16, modern-26.7).
func BenchmarkEndToEndPostgres(b *testing.B) {
	testenv.ForEachClickHouse(b, benchmarkEndToEndPostgres)
}

func benchmarkEndToEndPostgres(b *testing.B, ch *testenv.ClickHouseServer) {
	for i := 0; i < b.N; i++ {
		pg := testenv.Postgres(b)
		ctx := testenv.Context(b, 10*time.Minute)
		recv := recvlogicalPath(b)
		exec(b, pg.Conn, fmt.Sprintf(createTableSQL, "socotra_events"))
		cfg := DefaultConfig()
		exec(b, pg.Conn, "CREATE PUBLICATION "+cfg.Publication+" FOR TABLE socotra_events")
		ceilingSlot := testenv.Name("ceiling_")
		for _, s := range []string{ceilingSlot, cfg.Slot} {
			exec(b, pg.Conn, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", s)
		}
		for first := 1; first <= benchRows; first += 100 {
			exec(b, pg.Conn, insertSQL("socotra_events", first, first+99))
		}
		var endStr string
		if err := pg.Conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&endStr); err != nil {
			b.Fatal(err)
		}
		testenv.Binary(b) // built before the clock starts

		b.ResetTimer()
		cpu0 := testenv.ReadCPU()
		t0 := time.Now()
		cmd := osexec.CommandContext(ctx, recv, "-d", pg.DSN, "--slot", ceilingSlot, "--start", "--no-loop",
			"-o", "proto_version=2", "-o", "streaming=on", "-o", "publication_names="+cfg.Publication,
			"-E", endStr, "-f", "/dev/null")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("pg_recvlogical: %v: %s", err, out)
		}
		ceiling := time.Since(t0)
		ceilingCores := testenv.BusyCores(cpu0, testenv.ReadCPU())

		cpu1 := testenv.ReadCPU()
		server0 := ch.CPU()
		t1 := time.Now()
		// TRIBUTARY_BENCH_RUN_ARGS adds flags to the run, for tuning
		// experiments (as in the API benchmark).
		args := pgArgs(pg.DSN, ch.Flags(), "--pg.snapshot=false", "--pipeline.batch-events", "10000", "--pipeline.batch-age", "1s")
		p := testenv.Start(b, append(args, strings.Fields(os.Getenv("TRIBUTARY_BENCH_RUN_ARGS"))...)...)
		var n uint64
		for n < benchRows {
			if err := p.Alive(); err != nil {
				b.Fatal(err)
			}
			if time.Since(t1) > 5*time.Minute {
				b.Fatalf("timed out with %d of %d rows", n, benchRows)
			}
			time.Sleep(50 * time.Millisecond)
			_ = ch.Conn.QueryRow(context.Background(), "SELECT count() FROM "+ch.Database+".events").Scan(&n)
		}
		e2e := time.Since(t1)
		e2eCores := testenv.BusyCores(cpu1, testenv.ReadCPU())
		serverTime := ch.CPU() - server0
		ownBefore := testenv.ProcessCPU(p.Pid())
		b.StopTimer()
		peak := testenv.PeakRSS(p.Pid())
		if code, _ := p.Stop(b); code != 0 {
			b.Errorf("SIGTERM: exit code %d:\n%s", code, p.Output())
		}
		// The process's CPU up to the last row (read before the stop, which
		// only adds the drain of an idle pipeline).
		perRow := func(d time.Duration) float64 { return float64(d.Microseconds()) / benchRows }
		if ownBefore >= 0 {
			b.ReportMetric(perRow(ownBefore), "tributary-cpu-us/row")
		}
		if server0 >= 0 && serverTime >= 0 {
			b.ReportMetric(perRow(serverTime), "clickhouse-cpu-us/row")
		}
		if sum, ok := testenv.RunSummary(p.Output()); ok {
			b.ReportMetric(float64(sum.AllocatedBytes)/benchRows*1e6/(1<<20), "tributary-alloc-MiB/Mrows")
			b.ReportMetric(float64(sum.GCCycles), "tributary-gc-cycles")
			if sum.CPUSeconds > 0 {
				b.ReportMetric(sum.GCCPUSeconds/sum.CPUSeconds, "tributary-gc-cpu-share")
			}
		} else {
			b.Errorf("the run's output has no summary line with allocated_bytes:\n%.2000s", p.Output())
		}
		b.ReportMetric(float64(benchRows)/ceiling.Seconds(), "recvlogical-rows/s")
		b.ReportMetric(float64(benchRows)/e2e.Seconds(), "e2e-rows/s")
		b.ReportMetric(ceiling.Seconds()/e2e.Seconds()*100, "%-of-ceiling")
		b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
		// Cores busy (every process of the machine) while each ran: the
		// walsender and pg_recvlogical; the walsender, tributary and ClickHouse.
		b.ReportMetric(ceilingCores, "recvlogical-busy-cores")
		b.ReportMetric(e2eCores, "e2e-busy-cores")
	}
}

// BenchmarkEndToEndLargeTransaction replicates one transaction of two million
// rows through `tributary run --source postgres` (pipeline defaults) into
// ClickHouse and reports the rate and the process's peak RSS, which must stay
// under 300 MiB.
func BenchmarkEndToEndLargeTransaction(b *testing.B) {
	testenv.ForEachClickHouse(b, benchmarkEndToEndLargeTransaction)
}

func benchmarkEndToEndLargeTransaction(b *testing.B, ch *testenv.ClickHouseServer) {
	for i := 0; i < b.N; i++ {
		pg := testenv.Postgres(b)
		exec(b, pg.Conn, fmt.Sprintf(createTableSQL, "socotra_events"))
		cfg := DefaultConfig()
		exec(b, pg.Conn, "CREATE PUBLICATION "+cfg.Publication+" FOR TABLE socotra_events")
		exec(b, pg.Conn, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", cfg.Slot)
		pad := strings.Repeat("x", 180)
		exec(b, pg.Conn, fmt.Sprintf(`INSERT INTO socotra_events (locator, tenant, flavor, type, occurred_at, data)
			SELECT 'ev-' || lpad(i::text, 9, '0'), 't', 'suite', 'policy.issue', now(),
			       ('{"i": ' || i || ', "pad": "%s"}')::json
			FROM generate_series(1, %d) AS i`, pad, largeTxRows))
		testenv.Binary(b)

		b.ResetTimer()
		t0 := time.Now()
		p := testenv.Start(b, pgArgs(pg.DSN, ch.Flags(), "--pg.snapshot=false", "--pg.spill-dir", b.TempDir(),
			"--pipeline.batch-events", "10000", "--pipeline.batch-age", "1s")...)
		var n uint64
		for n < largeTxRows {
			if err := p.Alive(); err != nil {
				b.Fatal(err)
			}
			if time.Since(t0) > 20*time.Minute {
				b.Fatalf("timed out with %d of %d rows", n, largeTxRows)
			}
			time.Sleep(200 * time.Millisecond)
			_ = ch.Conn.QueryRow(context.Background(), "SELECT count() FROM "+ch.Database+".events").Scan(&n)
		}
		took := time.Since(t0)
		b.StopTimer()
		peak := testenv.PeakRSS(p.Pid())
		if code, _ := p.Stop(b); code != 0 {
			b.Errorf("SIGTERM: exit code %d:\n%s", code, p.Output())
		}
		b.ReportMetric(float64(largeTxRows)/took.Seconds(), "e2e-rows/s")
		b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
		if peak > 300<<20 {
			b.Errorf("peak RSS %d MiB, want < 300 MiB", peak>>20)
		}
	}
}
