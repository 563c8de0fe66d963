package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tributary-cdc/tributary/checkpoint"
	"github.com/tributary-cdc/tributary/internal/cli"
	"github.com/tributary-cdc/tributary/internal/flagdoc"
	"github.com/tributary-cdc/tributary/source/pgrepl"
)

func init() {
	register(command{
		name:    "checkpoint",
		summary: "show or reset a pipeline's saved position (show|reset)",
		run:     runCheckpoint,
		flagSet: func() *pflag.FlagSet { fs, _ := checkpointFlags(); return fs },
	})
}

// checkpointOptions are the checkpoint command's flags.
type checkpointOptions struct {
	storeOptions
	resnapshot bool
	yes        bool
	pg         pgrepl.Config
}

func checkpointFlags() (*pflag.FlagSet, *checkpointOptions) {
	o := &checkpointOptions{pg: pgrepl.DefaultConfig()}
	fs := pflag.NewFlagSet("checkpoint", pflag.ContinueOnError)
	o.storeOptions.register(fs, "the pipeline whose checkpoint to show or reset", false)
	fs.BoolVar(&o.yes, "yes", false, "with reset: do not ask for confirmation (required when standard input is not a terminal)")
	fs.BoolVar(&o.resnapshot, "resnapshot", false, "with reset: also drop the PostgreSQL replication slot (--pg.dsn, --pg.slot), so that the next start copies the table again; the recovery after a dropped publication or removed WAL")
	o.pg.RegisterFlags(fs)
	return fs, o
}

const checkpointUsage = `Usage: tributary checkpoint show|reset [--pipeline NAME] [--checkpoint.file PATH | --clickhouse.* flags] [--yes] [--resnapshot --pg.* flags]

show prints what is known of the pipeline: its source, its position (the
time of the newest event written, and the paging token or LSN), the events
written, the last checkpoint's time and age, the lag, its rejects and its
backfill windows (tributary status does the same for every pipeline, and
reads a running process too).

reset forgets the position, so that the pipeline starts over from its
configured start, and fences it: a pipeline still running stops at its next
checkpoint, and its next start begins anew. It asks for confirmation on a
terminal; elsewhere (a script, a pod) it needs --yes. reset --resnapshot
also drops the PostgreSQL source's replication slot, so that the next start
creates it again and copies the table (with --pg.snapshot): the recovery when
the slot cannot continue (its publication was dropped, or the WAL it needs
was removed). Rows written again collapse onto the ones already in ClickHouse.

Checkpoints are read from <database>._tributary_checkpoints in ClickHouse, or
from --checkpoint.file when set. The pipeline is "default" unless --pipeline
(or the run command's --pipeline.name) says otherwise; every flag has the same
TRIBUTARY_* environment twin as in the run command, so run it with the
deployment's environment. An unknown database, checkpoint table, file or
pipeline is an error (exit 1) that lists what exists.`

func runCheckpoint(args []string, stdout, stderr io.Writer) int {
	fs, o := checkpointFlags()
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	usageErr := func(err error) int {
		fmt.Fprintf(stderr, "tributary checkpoint: %v\n\n%s\n", err, checkpointUsage)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprintln(stdout, checkpointUsage)
			fmt.Fprintln(stdout)
			flagdoc.GroupedUsage(stdout, flagdoc.ByComponent(fs))
			return 0
		}
		return usageErr(err)
	}
	cliPipeline, cliPipelineName := fs.Changed("pipeline"), fs.Changed("pipeline.name")
	if err := cli.ApplyEnv(fs, nil); err != nil {
		return usageErr(err)
	}
	var problems []error
	action := fs.Arg(0)
	if fs.NArg() != 1 || (action != "show" && action != "reset") {
		problems = append(problems, fmt.Errorf("want exactly one action, show or reset; got %q", fs.Args()))
	}
	name, _, more := o.storeOptions.name(fs, cliPipeline, cliPipelineName)
	problems = append(problems, more...)
	if o.resnapshot {
		if action != "reset" {
			problems = append(problems, errors.New("--resnapshot goes with reset"))
		}
		if err := o.pg.Validate(); err != nil {
			problems = append(problems, fmt.Errorf("--resnapshot drops the PostgreSQL source's slot: %w", err))
		}
	}
	if o.yes && action != "reset" {
		problems = append(problems, errors.New("--yes goes with reset"))
	}
	if action == "reset" && !o.yes && !stdinIsTerminal() {
		problems = append(problems, errors.New("reset asks for confirmation, and standard input is not a terminal: add --yes to reset without asking"))
	}
	if len(problems) > 0 {
		return usageErr(errors.Join(problems...))
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "tributary checkpoint: %v\n", err)
		return 1
	}

	ctx, cancel := context.WithTimeout(context.Background(), o.clickhouse.DialTimeout+o.clickhouse.WriteTimeout)
	defer cancel()
	in, err := openInspector(ctx, o.storeOptions)
	if err != nil {
		return fail(err)
	}
	defer in.Close()
	store, where := in.store, in.where

	cp, found, err := in.load(ctx, name)
	corrupt := errors.Is(err, checkpoint.ErrCorrupt)
	if err != nil && !(corrupt && action == "reset") {
		return fail(err)
	}
	if action == "show" {
		in.screen(ctx, stdout, name, cp, found, nil)
		return 0
	}

	if !o.yes {
		what := "which has no checkpoint"
		switch {
		case corrupt:
			what = "whose checkpoint cannot be read"
		case found:
			what = fmt.Sprintf("at %s, %d events, saved %s ago", describePosition(cp.Position), cp.Events, roundAge(time.Since(cp.SavedAt)))
		}
		fmt.Fprintf(stderr, "Reset pipeline %s in %s (%s)?\nIts next start begins from the configured start, and a process still running it stops. Type yes to reset: ", name, where, what)
		answer, _ := bufio.NewReader(stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "yes" && a != "y" {
			fmt.Fprintln(stderr, "not reset")
			return 1
		}
	}

	if corrupt {
		fmt.Fprintf(stdout, "the stored checkpoint of pipeline %s cannot be read (%v); resetting it\n", name, err)
	}
	if err := store.Reset(ctx, name); err != nil {
		return fail(err)
	}
	after, _, err := store.Load(ctx, name)
	if err != nil {
		return fail(fmt.Errorf("the checkpoint was reset, but reading it back failed: %w", err))
	}
	if found {
		fmt.Fprintf(stdout, "reset the checkpoint of pipeline %s in %s: removed position %s, %d events, saved at %s (generation %d); now generation %d, without a checkpoint\n",
			name, where, cp.Position, cp.Events, cp.SavedAt.UTC().Format(time.RFC3339Nano), cp.Generation, after.Generation)
		fmt.Fprintf(stdout, "a pipeline still running stops at its next checkpoint; it was last saved %s ago\n", time.Since(cp.SavedAt).Round(time.Second))
	} else {
		fmt.Fprintf(stdout, "reset pipeline %s in %s, which had no checkpoint%s; now generation %d\n", name, where, generationNote(cp), after.Generation)
		fmt.Fprintln(stdout, "a pipeline still running stops at its next checkpoint")
	}
	fmt.Fprintln(stdout, "the next start begins from the configured start")

	if o.resnapshot {
		// After the reset: a pipeline still running is fenced before its
		// slot goes, so it cannot save a position of the old slot.
		pctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		done, err := pgrepl.DropReplication(pctx, o.pg)
		for _, d := range done {
			fmt.Fprintf(stdout, "postgres: %s\n", d)
		}
		if err != nil {
			return fail(fmt.Errorf("the checkpoint was reset, but the replication slot was not dropped: %w; run the command again", err))
		}
		if o.pg.Snapshot {
			fmt.Fprintf(stdout, "the next start creates slot %q again and copies table %s (--pg.snapshot); rows already in ClickHouse collapse onto themselves\n", o.pg.Slot, o.pg.Table)
		} else {
			fmt.Fprintf(stdout, "--pg.snapshot is false: the next start creates slot %q again and streams only changes made after it; start it with --pg.snapshot to copy table %s again\n", o.pg.Slot, o.pg.Table)
		}
	}
	return 0
}

// generationNote describes the entry of a pipeline without a checkpoint:
// nothing when it has none at all.
func generationNote(cp checkpoint.Checkpoint) string {
	if cp.Generation == 0 {
		return ""
	}
	return fmt.Sprintf(" (reset, or started and not saved yet; generation %d)", cp.Generation)
}

// stdin is where checkpoint reset reads its confirmation; stdinIsTerminal
// says whether to ask. Tests replace both.
var (
	stdin           io.Reader = os.Stdin
	stdinIsTerminal           = func() bool { return isTerminal(os.Stdin) }
)
