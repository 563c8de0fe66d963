package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"

	"github.com/tributary-cdc/tributary/internal/backoff"
	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/source/eventapi"
)

func init() {
	register(command{
		name:    "event",
		summary: "print one event (get LOCATOR) or every event of one API request (request REQUEST_ID) as the API returns them",
		run:     runEvent,
		flagSet: func() *pflag.FlagSet { fs, _ := eventFlags(); return fs },
	})
}

// apiAccessFlags are the --api.* flags that say how to reach the API; the
// others (the stream's filters, paging and enrichment) are hidden.
var apiAccessFlags = map[string]bool{
	"api.flavor": true, "api.url": true, "api.tenant": true, "api.token": true,
	"api.token-file": true, "api.request-timeout": true,
}

func eventFlags() (*pflag.FlagSet, *eventapi.Config) {
	cfg := &eventapi.Config{}
	fs := pflag.NewFlagSet("event", pflag.ContinueOnError)
	cfg.RegisterFlags(fs)
	fs.VisitAll(func(f *pflag.Flag) {
		if !apiAccessFlags[f.Name] {
			f.Hidden = true
		}
	})
	return fs, cfg
}

const eventUsage = `Usage: tributary event get LOCATOR [--api.* flags]
       tributary event request REQUEST_ID [--api.* flags]

Prints, as the API returns them (indented JSON), one event (suite: GET
/event/{tenant}/events/{locator}) or every event that one API request caused
(suite: GET /event/{tenant}/events/request/{requestId}, an array), for the
people who debug the stream. It uses the run command's client and flags
(--api.url, --api.tenant, --api.token or --api.token-file, and their
TRIBUTARY_API_* twins): the same authentication and error classification,
and the token is never printed. A transient failure (a timeout, HTTP 5xx or
429) is tried again, up to 4 attempts in all; a permanent one (HTTP 401 with
--api.token, 404) is not. The classic flavor has neither endpoint.

Exit codes: 0 printed; 1 the API failed or has no such event; 2 invalid usage.`

func runEvent(args []string, stdout, stderr io.Writer) int {
	fs, cfg := eventFlags()
	var action, id string
	if len(args) >= 2 && (args[0] == "get" || args[0] == "request") {
		action, id, args = args[0], args[1], args[2:]
	}
	if code, done := parseFlags("event", eventUsage, fs, args, stdout, stderr); done {
		return code
	}
	if action == "" || id == "" {
		fmt.Fprintf(stderr, "tributary event: want get LOCATOR or request REQUEST_ID\n\n%s\n", eventUsage)
		return 2
	}
	// The stream's first call needs a filter; these reads have none, and
	// Validate checks the rest (URL, tenant, token) the same way.
	if cfg.Start.IsZero() && len(cfg.Types) == 0 {
		cfg.Start = time.UnixMilli(0)
	}
	if err := cfg.Validate(); err != nil {
		return invalidConfig("event", err, stderr)
	}
	if cfg.Flavor != "suite" {
		return invalidConfig("event", fmt.Errorf("--api.flavor %s: %w", cfg.Flavor, eventapi.ErrSuiteOnly), stderr)
	}
	c, err := eventapi.New(*cfg)
	if err != nil {
		return invalidConfig("event", err, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*(cfg.RequestTimeout+time.Second)+10*time.Second)
	defer cancel()
	read := c.Event
	if action == "request" {
		read = c.RequestEvents
	}
	var body json.RawMessage
	err = retryCLI(ctx, stderr, func(ctx context.Context) error {
		var err error
		body, err = read(ctx, id)
		return err
	})
	if err != nil {
		fmt.Fprintf(stderr, "tributary event %s: %v\n", action, err)
		return 1
	}
	var out bytes.Buffer
	if err := json.Indent(&out, body, "", "  "); err != nil {
		out.Reset()
		out.Write(body)
	}
	out.WriteByte('\n')
	_, _ = stdout.Write(out.Bytes())
	return 0
}

// cliAttempts is how many times a command tries a call that fails
// transiently.
const cliAttempts = 4

// retryCLI calls op until it succeeds, fails permanently, or fails
// transiently cliAttempts times, with internal/backoff between attempts. The
// client makes one attempt per call and the pipeline owns retries in a
// running process; a command a person waits for may retry a few times
// itself, saying so on stderr.
func retryCLI(ctx context.Context, stderr io.Writer, op func(context.Context) error) error {
	for attempt := 0; ; attempt++ {
		err := op(ctx)
		if err == nil || fault.IsPermanent(err) || attempt+1 >= cliAttempts || errors.Is(err, context.Canceled) || ctx.Err() != nil {
			return err
		}
		wait := max(backoff.Delay(attempt, 500*time.Millisecond, 5*time.Second), fault.RetryAfter(err))
		fmt.Fprintf(stderr, "attempt %d failed (%v); trying again in %s\n", attempt+1, err, wait.Round(time.Millisecond))
		if serr := backoff.Sleep(ctx, wait); serr != nil {
			return err
		}
	}
}
