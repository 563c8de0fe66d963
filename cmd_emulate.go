package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/tributary-cdc/tributary/emulator"
)

func init() {
	register(command{
		name:    "emulate",
		summary: "serve an emulated Socotra event stream (suite or classic) for tests and demos",
		run:     runEmulate,
		flagSet: func() *pflag.FlagSet { fs, _ := emulateFlags(); return fs },
	})
}

// emulateFlags returns the emulate command's flags and the config they fill.
func emulateFlags() (*pflag.FlagSet, *emulator.Config) {
	cfg := &emulator.Config{Events: 10000}
	fs := pflag.NewFlagSet("emulate", pflag.ContinueOnError)
	cfg.RegisterFlags(fs)
	return fs, cfg
}

func runEmulate(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return emulate(ctx, stop, args, stdout, stderr)
}

const emulateUsage = `Usage: tributary emulate [FLAGS]

Serves an emulated Socotra event stream (suite or classic) until SIGINT or
SIGTERM; see docs/emulator.md.`

// emulate serves the emulator until ctx ends; stop restores default signal
// handling once shutdown begins, so that a second signal ends the process.
func emulate(ctx context.Context, stop func(), args []string, stdout, stderr io.Writer) int {
	fs, cfg := emulateFlags()
	if code, done := parseFlags("emulate", emulateUsage, fs, args, stdout, stderr); done {
		return code
	}
	if err := cfg.Validate(); err != nil {
		return invalidConfig("emulate", err, stderr)
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	chosen := cfg.Start.IsZero()
	if chosen {
		// A history that ends before the present: a run bounded by
		// --api.end now, or a verify up to now, sees all of it.
		cfg.Start = emulator.StartBefore(*cfg, time.Now())
	}
	srv, err := emulator.NewWithLogger(*cfg, log)
	if err != nil {
		log.Error("start emulator", "err", err)
		return 1
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", cfg.ListenAddress)
	if err != nil {
		log.Error("listen", "address", cfg.ListenAddress, "err", err)
		return 1
	}
	c := srv.Config()
	first, last := srv.TimeRange()
	log.Info("emulator listening", "address", ln.Addr().String(), "flavor", c.Flavor, "tenant", c.Tenant,
		"seed", c.Seed, "events", srv.Len(), "policies", c.Policies, "rate", c.Rate, "auth", c.Token != "", "postgres", c.PGDSN != "",
		"start", c.Start.Format(time.RFC3339), "start_chosen", chosen, "first_event", first.Format(time.RFC3339Nano), "last_event", last.Format(time.RFC3339Nano))
	if chosen {
		log.Info("the start was chosen so that the history ends before now; pass it to get the same history again",
			"flag", "--emulator.start="+c.Start.Format(time.RFC3339))
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	srv.Start(ctx)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		log.Error("serve", "err", err)
		return 1
	case <-ctx.Done():
	}
	stop()
	log.Info("emulator stopping", "events", srv.Len())
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	if err := srv.Close(); err != nil {
		log.Warn("close emulator", "err", err)
	}
	log.Info("emulator stopped")
	return 0
}
