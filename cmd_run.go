package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/tributary-cdc/tributary/checkpoint"
	"github.com/tributary-cdc/tributary/checkpoint/chstore"
	"github.com/tributary-cdc/tributary/checkpoint/filestore"
	"github.com/tributary-cdc/tributary/internal/backoff"
	"github.com/tributary-cdc/tributary/internal/logging"
	"github.com/tributary-cdc/tributary/internal/web"
	"github.com/tributary-cdc/tributary/mapping"
	"github.com/tributary-cdc/tributary/metrics"
	"github.com/tributary-cdc/tributary/pipeline"
	chsink "github.com/tributary-cdc/tributary/sink/clickhouse"
	"github.com/tributary-cdc/tributary/source"
	"github.com/tributary-cdc/tributary/source/eventapi"
	"github.com/tributary-cdc/tributary/source/pgrepl"
)

func init() {
	register(command{
		name:    "run",
		summary: "replicate the event stream (API or PostgreSQL) into ClickHouse",
		run:     runRun,
		flagSet: func() *pflag.FlagSet { fs, _ := runFlags(); return fs },
	})
}

// runConfig is the whole configuration of `tributary run`; defaults are set in
// runFlags, each component's in its own DefaultConfig.
type runConfig struct {
	source         string
	checkpointFile string
	memoryLimit    int64
	pipeline       pipeline.Config
	api            eventapi.Config
	pg             pgrepl.Config
	clickhouse     chsink.Config
	web            web.Config
	log            logging.Config
}

func runFlags() (*pflag.FlagSet, *runConfig) {
	c := &runConfig{
		source:      "api",
		memoryLimit: 160 << 20,
		pipeline:    pipeline.DefaultConfig(),
		pg:          pgrepl.DefaultConfig(),
		clickhouse:  chsink.DefaultConfig(),
		web:         web.Default(),
		log:         logging.Default(),
	}
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.StringVar(&c.source, "source", c.source, "where events come from: api (the event-stream API) or postgres (logical replication of a table)")
	fs.StringVar(&c.checkpointFile, "checkpoint.file", "", "keep checkpoints in this local JSON file instead of the ClickHouse table _tributary_checkpoints")
	fs.Int64Var(&c.memoryLimit, "runtime.memory-limit", c.memoryLimit, "soft limit of the Go heap in bytes (the garbage collector works harder near it; 0: none; GOMEMLIMIT, when set, wins)")
	c.pipeline.RegisterFlags(fs)
	c.api.RegisterFlags(fs)
	c.pg.RegisterFlags(fs)
	c.clickhouse.RegisterFlags(fs)
	c.web.RegisterFlags(fs)
	c.log.RegisterFlags(fs)
	return fs, c
}

// validate returns every problem of the configuration at once; it connects to nothing.
func (c *runConfig) validate() error {
	var errs []error
	switch c.source {
	case "api":
		errs = append(errs, c.api.Validate())
	case "postgres":
		errs = append(errs, c.pg.Validate())
	default:
		errs = append(errs, fmt.Errorf("--source must be api or postgres, got %q", c.source))
	}
	if c.memoryLimit < 0 {
		errs = append(errs, fmt.Errorf("--runtime.memory-limit must not be negative, got %d", c.memoryLimit))
	}
	errs = append(errs, c.pipeline.Validate(), c.clickhouse.Validate(), c.web.Validate(), c.log.Validate())
	return errors.Join(errs...)
}

const runUsage = `Usage: tributary run [FLAGS]

Replicates the event stream into ClickHouse until SIGTERM or SIGINT. The first
signal stops reading, writes what was read, saves the checkpoint and exits 0; a
second signal exits at once. Every flag has a TRIBUTARY_* environment twin
(--api.url is TRIBUTARY_API_URL); a flag set on the command line wins.`

func runRun(args []string, stdout, stderr io.Writer) int {
	fs, cfg := runFlags()
	if code, done := parseFlags("run", runUsage, fs, args, stdout, stderr); done {
		return code
	}
	if err := cfg.validate(); err != nil {
		return invalidConfig("run", err, stderr)
	}
	logger, err := logging.New(cfg.log, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "tributary run: %v\n", err)
		return 2
	}

	if _, set := os.LookupEnv("GOMEMLIMIT"); !set && cfg.memoryLimit > 0 {
		debug.SetMemoryLimit(cfg.memoryLimit)
	}
	ctx, stop := notifyShutdown(logger)
	defer stop()
	if err := run(ctx, cfg, logger); err != nil {
		logger.Error("tributary stopped", "err", err)
		return 1
	}
	return 0
}

// notifyShutdown returns a context cancelled by the first SIGTERM or SIGINT;
// a second signal exits the process at once.
func notifyShutdown(logger *slog.Logger) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		select {
		case s := <-sigs:
			logger.Info("signal received: draining; a second signal exits at once", "signal", s.String())
			cancel()
		case <-ctx.Done():
			return
		}
		s := <-sigs
		logger.Warn("second signal: exiting without draining", "signal", s.String())
		os.Exit(1)
	}()
	return ctx, func() { signal.Stop(sigs); cancel() }
}

func run(ctx context.Context, cfg *runConfig, logger *slog.Logger) error {
	logger.Info("tributary starting", "version", version, "commit", commit, "source", cfg.source, "pipeline", cfg.pipeline.Name)
	m := metrics.New(version, commit)

	chcfg := cfg.clickhouse
	chcfg.OnRetry = func(reason string) { m.Retry(metrics.ComponentSink, reason) }
	chcfg.OnInsert = m.ObserveInsert
	snk, err := connectSink(ctx, chcfg, logger)
	if err != nil {
		return err
	}
	defer snk.Close()
	if err := snk.Ensure(ctx, mapping.DefaultSchema()); err != nil {
		return fmt.Errorf("prepare ClickHouse schema: %w", err)
	}
	logger.Info("ClickHouse ready", "version", snk.ServerVersion(), "dialect", string(snk.Dialect()), "database", snk.Database())

	var store checkpoint.Store
	if cfg.checkpointFile != "" {
		store = filestore.New(cfg.checkpointFile)
	} else {
		store = chstore.New(snk.Conn(), snk.Database())
	}
	defer store.Close()

	health := &requestHealth{}
	src, enrich, sourceStats, err := openSource(cfg, m, health, logger)
	if err != nil {
		return err
	}

	p := pipeline.New(cfg.pipeline, src, snk, store, enrich, m.PipelineObserver(), logger)

	if cfg.web.ListenAddress != "" {
		ready := web.Checks(map[string]func(context.Context) error{
			"sink": func(ctx context.Context) error { return errors.Join(snk.Conn().Ping(ctx), p.SinkHealthy()(ctx)) },
			"source": func(ctx context.Context) error {
				return errors.Join(p.SourceHealthy()(ctx), health.check(sourceFailureGrace))
			},
			"checkpoint": p.CheckpointFresh(cfg.web.ReadyMaxCheckpointAge),
		})
		srv := web.New(cfg.web.ListenAddress, m.Registry(), ready, logger)
		if err := srv.Start(); err != nil {
			return fmt.Errorf("serve metrics and health on %s: %w", cfg.web.ListenAddress, err)
		}
		logger.Info("serving /metrics, /healthz and /readyz", "address", srv.Addr())
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
	}
	if sourceStats != nil {
		go func() {
			t := time.NewTicker(5 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					sourceStats()
				}
			}
		}()
	}
	return p.Run(ctx)
}

// connectSink connects to ClickHouse, retrying while the server is
// unreachable (a sidecar often starts before its database), until ctx ends.
func connectSink(ctx context.Context, cfg chsink.Config, logger *slog.Logger) (*chsink.Sink, error) {
	for attempt := 0; ; attempt++ {
		snk, err := chsink.New(ctx, cfg, logger)
		if err == nil {
			return snk, nil
		}
		if pipeline.IsPermanent(err) || ctx.Err() != nil || attempt >= 9 {
			return nil, fmt.Errorf("connect to ClickHouse at %v: %w", cfg.Addr, err)
		}
		wait := backoff.Delay(attempt, 500*time.Millisecond, 15*time.Second)
		logger.Warn("ClickHouse unreachable, retrying", "addr", cfg.Addr, "attempt", attempt+1, "in", wait, "err", err)
		if backoff.Sleep(ctx, wait) != nil {
			return nil, fmt.Errorf("connect to ClickHouse at %v: %w", cfg.Addr, err)
		}
	}
}

// openSource builds the configured source, its enricher (or nil) and a
// function that copies its statistics into metrics (or nil).
func openSource(cfg *runConfig, m *metrics.Metrics, health *requestHealth, logger *slog.Logger) (source.Source, pipeline.Enricher, func(), error) {
	switch cfg.source {
	case "postgres":
		src, err := pgrepl.New(cfg.pg, logger)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("PostgreSQL source: %w", err)
		}
		stats := func() {
			s := src.Stats()
			m.PGRepl(s.SlotLagBytes, uint64(s.ConfirmedLSN), s.Events)
		}
		return src, nil, stats, nil
	default:
		acfg := cfg.api
		acfg.Logger = logger
		acfg.OnRequest = func(status int, d time.Duration) {
			m.ObserveRequest(status, d)
			health.observe(status)
		}
		acfg.OnLookup = func(result string) { m.EnrichLookups.WithLabelValues(result).Inc() }
		client, err := eventapi.New(acfg)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("event-stream API source: %w", err)
		}
		var enrich pipeline.Enricher
		if acfg.EnrichPolicyLocators {
			enrich = client.Enricher()
		}
		return client, enrich, nil, nil
	}
}

// sourceFailureGrace is how long the API's requests may fail in a row (each
// retried by the client) before /readyz reports the source unreachable.
const sourceFailureGrace = 15 * time.Second

// requestHealth follows whether the source's requests succeed: the API client
// retries failures itself, so the pipeline never sees them.
type requestHealth struct {
	mu           sync.Mutex
	failingSince time.Time
	last         int
}

func (h *requestHealth) observe(status int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.last = status
	if status >= 200 && status < 300 {
		h.failingSince = time.Time{}
	} else if h.failingSince.IsZero() {
		h.failingSince = time.Now()
	}
}

func (h *requestHealth) check(grace time.Duration) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failingSince.IsZero() || time.Since(h.failingSince) < grace {
		return nil
	}
	last := "no response"
	if h.last != 0 {
		last = fmt.Sprintf("HTTP %d", h.last)
	}
	return fmt.Errorf("event-stream API requests failing for %s (last: %s)", time.Since(h.failingSince).Round(time.Second), last)
}
