package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/emulator"
	"github.com/tributary-cdc/tributary/internal/testenv"
)

// getText GETs url and returns the status and the body; a failed request is
// status 0.
func getText(url string) (int, string, time.Duration) {
	begin := time.Now()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error(), time.Since(begin)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), time.Since(begin)
}

// waitBody polls url until its body contains want (and the status is code),
// or fails the test after a minute.
func waitBody(t *testing.T, p *testenv.Process, url string, code int, want string) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var body string
	var got int
	for time.Now().Before(deadline) {
		if err := p.Alive(); err != nil {
			t.Fatal(err)
		}
		got, body, _ = getText(url)
		if got == code && strings.Contains(body, want) {
			return body
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("GET %s: %d %q; want %d containing %q", url, got, body, code, want)
	return ""
}

// TestStartsBeforeClickHouse: with ClickHouse down at start, the process
// serves /healthz (200) and /readyz (503, naming the sink and what start-up
// waits for) and keeps retrying instead of exiting; once ClickHouse answers,
// it replicates everything and turns ready, without a restart.
func TestStartsBeforeClickHouse(t *testing.T) {
	testenv.ForEachClickHouse(t, testStartsBeforeClickHouse)
}

func testStartsBeforeClickHouse(t *testing.T, ch *testenv.ClickHouseServer) {
	emu, err := emulator.New(emulator.Config{Flavor: emulator.FlavorSuite, Seed: 13, Events: 3000})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	srv := httptest.NewServer(emu.Handler())
	defer srv.Close()
	proxy := newStallProxy(t, ch.Addr)
	proxy.refusing.Store(true)
	web := "http://127.0.0.1:" + itoa(freePort(t))
	p := testenv.Start(t, apiArgs(srv.URL, emu.Tenant(), ch.FlagsVia(proxy.ln.Addr().String(), ch.Database),
		"--web.listen-address", strings.TrimPrefix(web, "http://"), "--pipeline.retry-max", "1s")...)
	waitBody(t, p, web+"/healthz", 200, "ok")
	body := waitBody(t, p, web+"/readyz", 503, "sink: failing since")
	if !strings.Contains(body, "starting: preparing the ClickHouse schema") {
		t.Errorf("/readyz during start-up = %q, want it to say what start-up waits for", body)
	}
	time.Sleep(2 * time.Second)
	if err := p.Alive(); err != nil {
		t.Fatalf("the process gave up while ClickHouse was down: %v", err)
	}

	proxy.refusing.Store(false)
	testenv.WaitEvents(t, ch.Conn, ch.Database, uint64(emu.Len()), 2*time.Minute, p.Alive)
	waitBody(t, p, web+"/readyz", 200, "ok")
	if code, took := p.Stop(t); code != 0 {
		t.Errorf("SIGTERM: exit code %d after %s:\n%s", code, took, p.Output())
	}
}

// TestShutdownIsBounded: SIGTERM ends the process within
// --pipeline.shutdown-timeout plus a second whatever state it is in, with
// exit 0 only when what was read is written and checkpointed; /readyz
// answers at once meanwhile and names a sink that stopped answering.
func TestShutdownIsBounded(t *testing.T) {
	testenv.ForEachClickHouse(t, testShutdownIsBounded)
}

func testShutdownIsBounded(t *testing.T, ch *testenv.ClickHouseServer) {
	emu, err := emulator.New(emulator.Config{Flavor: emulator.FlavorSuite, Seed: 17, Events: 40000, Policies: 1200})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	srv := httptest.NewServer(emu.Handler())
	defer srv.Close()
	const timeout = 2 * time.Second
	start := func(chAddr, apiURL string) (*testenv.Process, string) {
		web := "127.0.0.1:" + itoa(freePort(t))
		return testenv.Start(t, apiArgs(apiURL, emu.Tenant(), ch.FlagsVia(chAddr, testenv.Name("s_")),
			"--web.listen-address", web, "--pipeline.shutdown-timeout", timeout.String(),
			"--pipeline.failure-grace", "1s", "--pipeline.retry-max", "1s")...), "http://" + web
	}
	stop := func(name string, p *testenv.Process, wantCode int) {
		t.Helper()
		begin := time.Now()
		if err := syscall.Kill(p.Pid(), syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		code := p.Wait(t, timeout+5*time.Second)
		if took := time.Since(begin); took > timeout+time.Second || code != wantCode {
			t.Errorf("%s: SIGTERM: exit code %d after %s, want %d within %s:\n%s", name, code, took, wantCode, timeout+time.Second, p.Output())
		}
	}

	t.Run("clickhouse frozen mid-stream", func(t *testing.T) {
		proxy := newStallProxy(t, ch.Addr)
		p, web := start(proxy.ln.Addr().String(), srv.URL)
		waitBody(t, p, web+"/readyz", 200, "ok")
		proxy.stalled.Store(true)
		time.Sleep(3 * time.Second) // a write waits on the frozen server for longer than the grace
		code, body, took := getText(web + "/readyz")
		if code != 503 || !strings.Contains(body, "sink: no answer for") || took > 500*time.Millisecond {
			t.Errorf("/readyz with ClickHouse frozen: %d %q after %s; want 503 naming the sink, at once", code, body, took)
		}
		stop("frozen", p, 1)
		if !strings.Contains(p.Output(), "shutdown-timeout") {
			t.Errorf("the exit does not say the drain was cut short:\n%s", p.Output())
		}
	})
	t.Run("clickhouse down at start", func(t *testing.T) {
		proxy := newStallProxy(t, ch.Addr)
		proxy.refusing.Store(true)
		p, web := start(proxy.ln.Addr().String(), srv.URL)
		waitBody(t, p, web+"/readyz", 503, "sink: failing since")
		stop("down at start", p, 0)
	})
	t.Run("api hanging", func(t *testing.T) {
		api := newStallProxy(t, strings.TrimPrefix(srv.URL, "http://"))
		p, web := start(ch.Addr, "http://"+api.ln.Addr().String())
		waitBody(t, p, web+"/readyz", 200, "ok")
		api.stalled.Store(true)
		time.Sleep(time.Second)
		stop("api hanging", p, 0)
	})
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestResetStopsTheRunningPipeline: `tributary checkpoint reset` while a
// pipeline runs fences it: the running process stops at its next checkpoint
// with a message that says why (instead of undoing the reset with its next
// save), and the next start replicates from the configured start, exact.
func TestResetStopsTheRunningPipeline(t *testing.T) {
	testenv.ForEachClickHouse(t, testResetStopsTheRunningPipeline)
}

func testResetStopsTheRunningPipeline(t *testing.T, ch *testenv.ClickHouseServer) {
	// LiveClock: the appended events are stamped now, in the live tail
	// window of the backfill, as a real tenant's new events are.
	emu, err := emulator.New(emulator.Config{Flavor: emulator.FlavorSuite, Seed: 19, Events: 6000, Policies: 300, LiveClock: true})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	srv := httptest.NewServer(emu.Handler())
	defer srv.Close()
	args := apiArgs(srv.URL, emu.Tenant(), ch.Flags())
	p := testenv.Start(t, args...)
	testenv.WaitEvents(t, ch.Conn, ch.Database, uint64(emu.Len()), time.Minute, p.Alive)

	reset := testenv.Start(t, append([]string{"checkpoint", "reset", "--yes", "--pipeline", "e2e"}, ch.Flags()...)...)
	if code := reset.Wait(t, 30*time.Second); code != 0 || !strings.Contains(reset.Output(), "stops at its next checkpoint") {
		t.Fatalf("checkpoint reset: exit %d:\n%s", code, reset.Output())
	}
	// A new event makes the running pipeline save again: it must stop.
	emu.Append(5)
	if code := p.Wait(t, 30*time.Second); code != 1 || !strings.Contains(p.Output(), "reset or taken over") {
		t.Fatalf("the running pipeline after a reset: exit %d, want 1 saying it was reset:\n%s", code, p.Output())
	}
	q := testenv.Start(t, args...)
	testenv.WaitEvents(t, ch.Conn, ch.Database, uint64(emu.Len()), time.Minute, q.Alive)
	q.WaitOutput(t, "no checkpoint: starting from the configured start", 10*time.Second)
	if code, _ := q.Stop(t); code != 0 {
		t.Errorf("SIGTERM: exit %d:\n%s", code, q.Output())
	}
	if n, err := testenv.CountEvents(t.Context(), ch.Conn, ch.Database); err != nil || n != uint64(emu.Len()) {
		t.Errorf("%d events after the reset and replay (%v), want %d", n, err, emu.Len())
	}
}
