// Package web serves tributary's operational endpoints: /metrics
// (Prometheus), /healthz (the process is alive) and /readyz (the source and
// the sink answer and the last checkpoint is recent enough).
package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"

	"github.com/tributary-cdc/tributary/internal/logging"
)

// DefaultPort is the port of the default --web.listen-address; the
// Dockerfile EXPOSEs it.
const DefaultPort = 9464

// DefaultReadyTimeout bounds one run of the readiness checks.
const DefaultReadyTimeout = 5 * time.Second

// Config is the web part of the configuration.
type Config struct {
	// ListenAddress is host:port to serve on; empty disables the server.
	ListenAddress string
	// ReadyMaxCheckpointAge is the oldest the last checkpoint may be for /readyz to succeed.
	ReadyMaxCheckpointAge time.Duration
	// Pprof serves Go's profiles under /debug/pprof/ (off by default: a
	// profile costs CPU and shows the process's internals).
	Pprof bool
}

// Default returns the configuration the flags default to.
func Default() Config {
	return Config{ListenAddress: ":" + strconv.Itoa(DefaultPort), ReadyMaxCheckpointAge: 5 * time.Minute}
}

// RegisterFlags adds --web.listen-address and --web.ready-max-checkpoint-age to fs, bound to c.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	d := Default()
	fs.StringVar(&c.ListenAddress, "web.listen-address", d.ListenAddress,
		`address serving /metrics, /healthz and /readyz ("" disables)`)
	fs.DurationVar(&c.ReadyMaxCheckpointAge, "web.ready-max-checkpoint-age", d.ReadyMaxCheckpointAge,
		"/readyz fails when the last checkpoint is older than this")
	fs.BoolVar(&c.Pprof, "web.pprof", false,
		"also serve Go's CPU, heap and allocation profiles under /debug/pprof/ (for performance work; keep the address private)")
}

// Validate reports every invalid field at once, without listening.
func (c Config) Validate() error {
	var errs []error
	if c.ListenAddress != "" {
		_, port, err := net.SplitHostPort(c.ListenAddress)
		if err != nil {
			errs = append(errs, fmt.Errorf("--web.listen-address %q: %v", c.ListenAddress, err))
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("--web.listen-address %q: port %q is not a number from 0 to 65535", c.ListenAddress, port))
		}
	}
	if c.ReadyMaxCheckpointAge <= 0 {
		errs = append(errs, fmt.Errorf("--web.ready-max-checkpoint-age %s: want a positive duration", c.ReadyMaxCheckpointAge))
	}
	return errors.Join(errs...)
}

// Checks combines named checks into one that runs them concurrently and
// reports every failure, as "name: error" lines sorted by name. Each check
// returns nil when ready and must return soon after its context is done.
func Checks(checks map[string]func(ctx context.Context) error) func(ctx context.Context) error {
	names := make([]string, 0, len(checks))
	for n := range checks {
		names = append(names, n)
	}
	sort.Strings(names)
	return func(ctx context.Context) error {
		errs := make([]error, len(names))
		var wg sync.WaitGroup
		for i, n := range names {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := checks[n](ctx); err != nil {
					errs[i] = fmt.Errorf("%s: %w", n, err)
				}
			}()
		}
		wg.Wait()
		return errors.Join(errs...)
	}
}

// MaxAge returns a check that fails when age() exceeds max, such as the
// checkpoint age (metrics.Metrics.CheckpointAge) against
// Config.ReadyMaxCheckpointAge.
func MaxAge(age func() time.Duration, max time.Duration) func(ctx context.Context) error {
	return func(context.Context) error {
		if a := age(); a > max {
			return fmt.Errorf("last checkpoint %s ago, more than %s", a.Round(time.Second), max)
		}
		return nil
	}
}

// Server serves /metrics, /healthz and /readyz.
type Server struct {
	// ReadyTimeout bounds one run of the readiness function; set it before Start.
	ReadyTimeout time.Duration
	// Pprof adds /debug/pprof/ (Config.Pprof); set it before Start.
	Pprof bool

	addr   string
	reg    *prometheus.Registry
	ready  func(ctx context.Context) error
	logger *slog.Logger

	srv *http.Server
	ln  net.Listener

	mu       sync.Mutex
	notReady bool // the last /readyz failed; for logging transitions only
	degraded bool // the last /readyz was ready but degraded; likewise
}

// New returns a server for addr that serves reg's metrics and calls ready for
// /readyz (a nil ready is always ready). logger may be nil.
func New(addr string, reg *prometheus.Registry, ready func(ctx context.Context) error, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{ReadyTimeout: DefaultReadyTimeout, addr: addr, reg: reg, ready: ready, logger: logger}
}

// Handler returns the server's routes, for tests and for embedding.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	if s.reg != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		text(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		text(w, http.StatusOK, "tributary: /metrics /healthz /readyz")
	})
	return mux
}

// Start listens on the address and serves in the background. A bind error
// is returned at once.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("web: listen on %s: %w", s.addr, err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	s.logger.Debug("web server listening", "addr", ln.Addr().String())
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("web server stopped", "err", err)
		}
	}()
	return nil
}

// Addr returns the bound address once started (useful with port 0), else the configured one.
func (s *Server) Addr() string {
	if s.ln != nil {
		return s.ln.Addr().String()
	}
	return s.addr
}

// Shutdown stops accepting connections and waits for in-flight requests
// until ctx is done. It is a no-op on a server that was not started.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	if err := s.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("web: shut down: %w", err)
	}
	return nil
}

// degraded is an error of a readiness check that means "ready, but
// degraded" (pipeline.DegradedError): /readyz answers 200 with its reasons.
type degraded interface{ Degraded() bool }

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	err := s.runReady(r.Context())
	var d degraded
	if err != nil && errors.As(err, &d) && d.Degraded() {
		msg := logging.RedactText(err.Error())
		s.mu.Lock()
		changed := s.notReady || !s.degraded
		s.notReady, s.degraded = false, true
		s.mu.Unlock()
		if changed {
			s.logger.Warn("ready, degraded", "reason", msg)
		}
		text(w, http.StatusOK, "ok, "+msg)
		return
	}
	s.mu.Lock()
	if err == nil && s.degraded {
		s.logger.Info("no longer degraded")
	}
	s.degraded = false
	s.mu.Unlock()
	s.mu.Lock()
	changed := (err != nil) != s.notReady
	s.notReady = err != nil
	s.mu.Unlock()
	if err != nil {
		msg := logging.RedactText(err.Error())
		if changed {
			s.logger.Warn("not ready", "reason", msg)
		}
		text(w, http.StatusServiceUnavailable, "not ready:\n"+msg)
		return
	}
	if changed {
		s.logger.Info("ready")
	}
	text(w, http.StatusOK, "ok")
}

// runReady calls ready with a timeout, returning when the timeout passes
// even if ready ignores its context.
func (s *Server) runReady(parent context.Context) error {
	if s.ready == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(parent, s.ReadyTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.ready(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("readiness checks did not answer within %s", s.ReadyTimeout)
	}
}

func text(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintln(w, body)
}
