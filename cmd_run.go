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
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/tributary-cdc/tributary/checkpoint"
	"github.com/tributary-cdc/tributary/checkpoint/chstore"
	"github.com/tributary-cdc/tributary/checkpoint/filestore"
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
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, fs, logger) }()
	if err := awaitRun(ctx, done, cfg.pipeline.ShutdownTimeout+shutdownGrace); err != nil {
		logger.Error("tributary stopped", "err", err)
		return 1
	}
	return 0
}

// shutdownGrace is how long past --pipeline.shutdown-timeout the process
// waits for run to return after a signal before it exits anyway.
const shutdownGrace = 500 * time.Millisecond

// awaitRun waits for run's result; once ctx is done (a signal), it waits at
// most limit more, so that the process exits within
// --pipeline.shutdown-timeout (plus a moment) in every state, even when a
// call ignores its context.
func awaitRun(ctx context.Context, done <-chan error, limit time.Duration) error {
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("shutdown did not finish within --pipeline.shutdown-timeout (+%s): exiting; nothing is lost, the next start replays from the last checkpoint", shutdownGrace)
	}
}

// notifyShutdown returns a context cancelled by the first SIGTERM or SIGINT;
// a second signal exits the process at once.
func notifyShutdown(logger *slog.Logger) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		select {
		case s := <-sigs:
			logger.Info("signal received: draining; a second signal exits at once", "signal", s.String())
			cancel()
		case <-ctx.Done():
			return
		}
		first := time.Now()
		for s := range sigs {
			if time.Since(first) < signalEcho {
				// One signal delivered twice: GNU timeout and a terminal
				// signal the process and its group at the same moment.
				continue
			}
			logger.Warn("second signal: exiting without draining", "signal", s.String())
			os.Exit(1)
		}
	}()
	return ctx, func() { signal.Stop(sigs); cancel() }
}

// signalEcho is how close a second signal may follow the first and still
// count as the same one.
const signalEcho = 100 * time.Millisecond

// configSummary returns every flag's value as a log attribute, for the
// configuration line at start; secrets are redacted by the logger (by their
// flag's name, and passwords inside DSNs and URLs).
func configSummary(fs *pflag.FlagSet) []any {
	var attrs []any
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Deprecated != "" || f.Hidden {
			return
		}
		attrs = append(attrs, slog.String(f.Name, f.Value.String()))
	})
	return attrs
}

// run wires the parts without connecting anything, starts the web server,
// and runs the pipeline, which connects, retries and reports health.
func run(ctx context.Context, cfg *runConfig, fs *pflag.FlagSet, logger *slog.Logger) error {
	logger.Info("tributary starting", "version", version, "commit", commit, "source", cfg.source, "pipeline", cfg.pipeline.Name)
	logger.Info("configuration", configSummary(fs)...)
	m := metrics.New(version, commit)

	chcfg := cfg.clickhouse
	chcfg.OnInsert = m.ObserveInsert
	snk, err := chsink.NewLazy(chcfg, logger)
	if err != nil {
		return err
	}
	defer snk.Close()

	var store checkpoint.Store
	if cfg.checkpointFile != "" {
		store = filestore.New(cfg.checkpointFile)
	} else {
		cs, err := chstore.NewLazy(cfg.clickhouse)
		if err != nil {
			return err
		}
		store = cs.WithLogger(logger)
	}
	defer store.Close()

	src, enrich, sourceStats, err := openSource(cfg, m, logger)
	if err != nil {
		return err
	}
	if c, ok := enrich.(io.Closer); ok {
		defer c.Close()
	}
	p := pipeline.New(cfg.pipeline, pipeline.Parts{Source: src, Sink: snk, Store: store, Schema: mapping.DefaultSchema(), Enricher: enrich},
		m.PipelineObserver(), logger)

	if cfg.web.ListenAddress != "" {
		srv := web.New(cfg.web.ListenAddress, m.Registry(), p.Ready(cfg.web.ReadyMaxCheckpointAge), logger)
		srv.Pprof = cfg.web.Pprof
		if err := srv.Start(); err != nil {
			return fmt.Errorf("serve metrics and health on %s: %w", cfg.web.ListenAddress, err)
		}
		logger.Info("serving /metrics, /healthz and /readyz", "address", srv.Addr())
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
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

// openSource builds the configured source, its enricher (or nil) and a
// function that copies its statistics into metrics (or nil).
func openSource(cfg *runConfig, m *metrics.Metrics, logger *slog.Logger) (source.Source, pipeline.Enricher, func(), error) {
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
		acfg.OnRequest = m.ObserveRequest
		acfg.OnLookup = func(result string) { m.EnrichLookups.WithLabelValues(result).Inc() }
		client, err := eventapi.New(acfg)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("event-stream API source: %w", err)
		}
		var enrich pipeline.Enricher
		if acfg.EnrichPolicyLocators {
			// Look-ups answered once are kept in ClickHouse beside the
			// data, so that a restart does not ask the API again.
			enrich = client.Enricher().WithStore(chsink.NewLookupStore(cfg.clickhouse, acfg.Tenant))
		}
		stats := func() {
			s := client.LimiterStats()
			w := client.Windows()
			m.APIBudget(s.Limit, s.InFlight, s.Throttled, s.Requests, w.Total, w.Done)
		}
		return client, enrich, stats, nil
	}
}
