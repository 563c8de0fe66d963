package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/spf13/pflag"

	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/metrics"
)

// start serves ready on a free loopback port and stops at the test's end.
func start(t *testing.T, ready func(context.Context) error, timeout time.Duration) (*Server, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	s := New("127.0.0.1:0", metrics.New("1.0.0", "abc").Registry(), ready, slog.New(slog.NewTextHandler(&logs, nil)))
	if timeout > 0 {
		s.ReadyTimeout = timeout
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s, &logs
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// degradedErr is a readiness error meaning "ready, but degraded", as
// pipeline.DegradedError.
type degradedErr struct{ why string }

func (e degradedErr) Error() string  { return "degraded: " + e.why }
func (e degradedErr) Degraded() bool { return true }

func TestEndpoints(t *testing.T) {
	secretErr := errors.New("dial postgres://rep:hunter2@127.0.0.1:1/app: connection refused")
	slow := func(ctx context.Context) error { time.Sleep(2 * time.Second); return nil } // ignores ctx
	tests := []struct {
		name     string
		ready    func(context.Context) error
		path     string
		wantCode int
		want     []string
		notWant  []string
	}{
		{"healthz", nil, "/healthz", 200, []string{"ok"}, nil},
		{"metrics", nil, "/metrics", 200, []string{"tributary_build_info{commit=\"abc\"", "go_goroutines", "tributary_pipeline_attempts_total{component=\"sink\",outcome=\"transient\"} 0"}, nil},
		{"ready without checks", nil, "/readyz", 200, []string{"ok"}, nil},
		{"ready", func(context.Context) error { return nil }, "/readyz", 200, []string{"ok"}, nil},
		{"not ready, secret redacted", func(context.Context) error { return secretErr }, "/readyz", 503,
			[]string{"not ready", "connection refused", "[REDACTED]"}, []string{"hunter2"}},
		{"slow check times out", slow, "/readyz", 503, []string{"did not answer within 200ms"}, nil},
		{"ready but degraded", func(context.Context) error { return degradedErr{"ClickHouse 10.0.0.1:9000 unreachable"} }, "/readyz", 200,
			[]string{"ok, degraded: ClickHouse 10.0.0.1:9000 unreachable"}, []string{"not ready"}},
		{"degraded wrapped", func(context.Context) error { return fmt.Errorf("check: %w", degradedErr{"x"}) }, "/readyz", 200,
			[]string{"ok, check: degraded: x"}, nil},
		{"unknown path", nil, "/nope", 404, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := start(t, tt.ready, 200*time.Millisecond)
			began := time.Now()
			code, body := get(t, "http://"+s.Addr()+tt.path)
			if code != tt.wantCode {
				t.Errorf("GET %s = %d, want %d; body %q", tt.path, code, tt.wantCode, body)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("GET %s body lacks %q:\n%.2000s", tt.path, w, body)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(body, w) {
					t.Errorf("GET %s body shows %q", tt.path, w)
				}
			}
			if d := time.Since(began); d > 1500*time.Millisecond {
				t.Errorf("GET %s took %s", tt.path, d)
			}
		})
	}
}

func TestReadinessTransitionsAreLoggedOnce(t *testing.T) {
	var fail atomic.Bool
	s, logs := start(t, func(context.Context) error {
		if fail.Load() {
			return errors.New("sink: down")
		}
		return nil
	}, 0)
	for _, f := range []bool{true, true, true, false, false} {
		fail.Store(f)
		get(t, "http://"+s.Addr()+"/readyz")
	}
	if got := strings.Count(logs.String(), "not ready"); got != 1 {
		t.Errorf("%d 'not ready' log lines, want 1:\n%s", got, logs)
	}
	if got := strings.Count(logs.String(), "msg=ready"); got != 1 {
		t.Errorf("%d 'ready' log lines, want 1:\n%s", got, logs)
	}
}

func TestChecksReportsEveryFailure(t *testing.T) {
	ok := func(context.Context) error { return nil }
	bad := func(msg string) func(context.Context) error {
		return func(context.Context) error { return errors.New(msg) }
	}
	tests := []struct {
		checks map[string]func(context.Context) error
		want   string // "" for nil
	}{
		{map[string]func(context.Context) error{}, ""},
		{map[string]func(context.Context) error{"sink": ok, "source": ok}, ""},
		{map[string]func(context.Context) error{"source": bad("401 Unauthorized"), "sink": ok}, "source: 401 Unauthorized"},
		{map[string]func(context.Context) error{"source": bad("timeout"), "sink": bad("refused"), "checkpoint": ok},
			"sink: refused\nsource: timeout"},
	}
	for _, tt := range tests {
		err := Checks(tt.checks)(context.Background())
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("Checks(%d checks) = %q, want %q", len(tt.checks), got, tt.want)
		}
	}
}

func TestChecksRunConcurrently(t *testing.T) {
	sleep := func(ctx context.Context) error { time.Sleep(300 * time.Millisecond); return nil }
	check := Checks(map[string]func(context.Context) error{"a": sleep, "b": sleep, "c": sleep})
	began := time.Now()
	if err := check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d > 800*time.Millisecond {
		t.Errorf("three 300ms checks took %s, want them concurrent", d)
	}
}

func TestMaxAge(t *testing.T) {
	tests := []struct {
		age, max time.Duration
		wantErr  bool
	}{
		{time.Minute, 5 * time.Minute, false},
		{5 * time.Minute, 5 * time.Minute, false},
		{6 * time.Minute, 5 * time.Minute, true},
	}
	for _, tt := range tests {
		err := MaxAge(func() time.Duration { return tt.age }, tt.max)(context.Background())
		if (err != nil) != tt.wantErr {
			t.Errorf("MaxAge(%s, %s) = %v, want error %v", tt.age, tt.max, err, tt.wantErr)
		}
	}
	// With the real metrics: no checkpoint yet counts from the start.
	m := metrics.New("v", "c")
	if err := MaxAge(m.CheckpointAge, time.Hour)(context.Background()); err != nil {
		t.Errorf("fresh process: %v", err)
	}
	m.CheckpointSaved(time.Now().Add(-2*time.Hour), 1)
	if err := MaxAge(m.CheckpointAge, time.Hour)(context.Background()); err == nil {
		t.Error("checkpoint two hours old: ready, want an error")
	}
}

func TestStartReportsBindErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := New(ln.Addr().String(), nil, nil, nil)
	if err := s.Start(); err == nil {
		s.Shutdown(context.Background())
		t.Fatalf("Start on the busy %s succeeded, want an error", ln.Addr())
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown of a server that did not start: %v", err)
	}
}

func TestShutdownStopsServing(t *testing.T) {
	s := New("127.0.0.1:0", nil, nil, nil)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	if code, _ := get(t, "http://"+addr+"/healthz"); code != 200 {
		t.Fatalf("healthz = %d before shutdown", code)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Error("GET after Shutdown succeeded, want a connection error")
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		args    []string
		want    Config
		wantErr []string
	}{
		{nil, Config{":9464", 5 * time.Minute, false}, nil},
		{[]string{"--web.listen-address=", "--web.ready-max-checkpoint-age=90s", "--web.pprof"}, Config{"", 90 * time.Second, true}, nil},
		{[]string{"--web.listen-address=127.0.0.1:0"}, Config{"127.0.0.1:0", 5 * time.Minute, false}, nil},
		{[]string{"--web.listen-address=9464", "--web.ready-max-checkpoint-age=0s"}, Config{"9464", 0, false},
			[]string{`--web.listen-address "9464"`, "--web.ready-max-checkpoint-age 0s"}},
		{[]string{"--web.listen-address=:http2"}, Config{":http2", 5 * time.Minute, false}, []string{`port "http2"`}},
	}
	for _, tt := range tests {
		var c Config
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		c.RegisterFlags(fs)
		if err := fs.Parse(tt.args); err != nil {
			t.Fatal(err)
		}
		if c != tt.want {
			t.Errorf("%q: %+v, want %+v", tt.args, c, tt.want)
		}
		err := c.Validate()
		if (err != nil) != (len(tt.wantErr) > 0) {
			t.Errorf("%q: Validate() = %v, want errors %q", tt.args, err, tt.wantErr)
		}
		for _, w := range tt.wantErr {
			if err != nil && !strings.Contains(err.Error(), w) {
				t.Errorf("%q: Validate() = %v, want it to contain %q", tt.args, err, w)
			}
		}
	}
}

// TestReadinessAgainstClickHouse composes readiness from a ping of the real
// test ClickHouse and of a closed port, as the run command does for its sink.
func TestReadinessAgainstClickHouse(t *testing.T) {
	testenv.ForEachClickHouse(t, testReadinessAgainstClickHouse)
}

func testReadinessAgainstClickHouse(t *testing.T, ch *testenv.ClickHouseServer) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	down, err := clickhouse.Open(&clickhouse.Options{Addr: []string{closed}, DialTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	tests := []struct {
		name     string
		checks   map[string]func(context.Context) error
		wantCode int
		want     string
	}{
		{"clickhouse up", map[string]func(context.Context) error{"sink": ch.Conn.Ping}, 200, "ok"},
		{"clickhouse down", map[string]func(context.Context) error{"sink": ch.Conn.Ping, "checkpoint sink": down.Ping}, 503, "checkpoint sink: "},
	}
	for _, tt := range tests {
		s, _ := start(t, Checks(tt.checks), 3*time.Second)
		code, body := get(t, "http://"+s.Addr()+"/readyz")
		if code != tt.wantCode || !strings.Contains(body, tt.want) {
			t.Errorf("%s: /readyz = %d %q, want %d containing %q", tt.name, code, body, tt.wantCode, tt.want)
		}
	}
}

func TestPprofOnlyWhenAsked(t *testing.T) {
	for _, on := range []bool{false, true} {
		s := New("127.0.0.1:0", nil, nil, nil)
		s.Pprof = on
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		code, body := get(t, "http://"+s.Addr()+"/debug/pprof/")
		_ = s.Shutdown(context.Background())
		switch {
		case on && (code != 200 || !strings.Contains(body, "heap")):
			t.Errorf("with Pprof: GET /debug/pprof/ = %d %.200q, want 200 listing the heap profile", code, body)
		case !on && code != 404:
			t.Errorf("without Pprof: GET /debug/pprof/ = %d, want 404", code)
		}
	}
}
