package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/spf13/pflag"
)

func init() {
	register(command{
		name:    "status",
		summary: "show each pipeline: source, position, events, checkpoint age, lag, rejects (and a running process)",
		run:     runStatus,
		flagSet: func() *pflag.FlagSet { fs, _ := statusFlags(); return fs },
	})
}

type statusOptions struct {
	storeOptions
	webURL     string
	webTimeout time.Duration
}

func statusFlags() (*pflag.FlagSet, *statusOptions) {
	o := &statusOptions{webTimeout: 5 * time.Second}
	fs := pflag.NewFlagSet("status", pflag.ContinueOnError)
	o.storeOptions.register(fs, "show only this pipeline (default: every pipeline in the store)", true)
	fs.StringVar(&o.webURL, "web.url", "", "base URL of the running process's --web.listen-address, e.g. http://127.0.0.1:9464: adds its /readyz and /metrics")
	fs.DurationVar(&o.webTimeout, "web.timeout", o.webTimeout, "timeout of each request to --web.url")
	return fs, o
}

const statusUsage = `Usage: tributary status [--pipeline NAME] [--checkpoint.file PATH | --clickhouse.* flags] [--web.url URL]

Prints one screen per pipeline of the checkpoint store (or only --pipeline):
its source (from the events it wrote), its position (the time of the newest
event written, and the paging token or LSN), the events written, the last
checkpoint's time and age, the lag (now minus the newest event written), its
rejects (_tributary_rejects), and its backfill windows. With --web.url, also
what the running process says: /readyz and, from /metrics, its events read
and written, its lag and its checkpoint age.

Exit codes: 0 when everything asked for was read; 1 when the database, the
checkpoint table or file, or the pipeline does not exist (the message lists
what does), ClickHouse cannot be reached, or --web.url does not answer; 2
for invalid flags. Every flag has the TRIBUTARY_* twin the run command uses.`

func runStatus(args []string, stdout, stderr io.Writer) int {
	fs, o := statusFlags()
	var cliPipeline, cliPipelineName bool
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err == nil {
		// Which spelling the command line used, before the environment.
		cliPipeline, cliPipelineName = fs.Changed("pipeline"), fs.Changed("pipeline.name")
	}
	fs, o = statusFlags()
	if code, done := parseFlags("status", statusUsage, fs, args, stdout, stderr); done {
		return code
	}
	name, named, problems := o.storeOptions.name(fs, cliPipeline, cliPipelineName)
	if o.webURL != "" {
		if u, err := url.Parse(o.webURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			problems = append(problems, fmt.Errorf("--web.url %q: want http://host:port", o.webURL))
		}
	}
	if o.webTimeout <= 0 {
		problems = append(problems, fmt.Errorf("--web.timeout %s: want a positive duration", o.webTimeout))
	}
	if len(problems) > 0 {
		return invalidConfig("status", errors.Join(problems...), stderr)
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "tributary status: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.clickhouse.DialTimeout+o.clickhouse.WriteTimeout)
	defer cancel()
	in, err := openInspector(ctx, o.storeOptions)
	if err != nil {
		return fail(err)
	}
	defer in.Close()
	names := []string{name}
	if !named {
		if names, err = in.list(ctx); err != nil {
			return fail(err)
		}
		if len(names) == 0 {
			return fail(fmt.Errorf("no pipeline has a checkpoint in %s yet", in.where))
		}
	}
	var proc *processFacts
	if o.webURL != "" {
		proc = readProcess(ctx, o.webURL, o.webTimeout)
	}
	for i, n := range names {
		cp, found, err := in.load(ctx, n)
		if err != nil {
			return fail(err)
		}
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		var p *processFacts
		if proc != nil && (len(names) == 1 || n == name) {
			p = proc // the process runs one pipeline: shown with the one named
		}
		in.screen(ctx, stdout, n, cp, found, p)
	}
	if proc != nil && len(names) > 1 && !contains(names, name) {
		fmt.Fprintln(stdout)
		proc.write(stdout, func(label, format string, args ...any) {
			fmt.Fprintf(stdout, "%-17s %s\n", label+":", fmt.Sprintf(format, args...))
		})
	}
	if proc != nil && proc.err != nil {
		return 1
	}
	return 0
}
