package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tributary-cdc/tributary/checkpoint"
	"github.com/tributary-cdc/tributary/checkpoint/chstore"
	"github.com/tributary-cdc/tributary/checkpoint/filestore"
	"github.com/tributary-cdc/tributary/internal/cli"
	"github.com/tributary-cdc/tributary/internal/flagdoc"
	"github.com/tributary-cdc/tributary/pipeline"
	chsink "github.com/tributary-cdc/tributary/sink/clickhouse"
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
	pipeline     string // --pipeline
	pipelineName string // --pipeline.name, the run command's spelling
	file         string
	resnapshot   bool
	clickhouse   chsink.Config
	pg           pgrepl.Config
}

func checkpointFlags() (*pflag.FlagSet, *checkpointOptions) {
	o := &checkpointOptions{clickhouse: chsink.DefaultConfig(), pg: pgrepl.DefaultConfig()}
	name := pipeline.DefaultConfig().Name
	fs := pflag.NewFlagSet("checkpoint", pflag.ContinueOnError)
	fs.StringVar(&o.pipeline, "pipeline", name, "the pipeline whose checkpoint to show or reset (run's --pipeline.name)")
	fs.StringVar(&o.pipelineName, "pipeline.name", name, "the same as --pipeline, spelled as the run command spells it")
	fs.StringVar(&o.file, "checkpoint.file", "", "read the checkpoint from this JSON file instead of the ClickHouse table")
	fs.BoolVar(&o.resnapshot, "resnapshot", false, "with reset: also drop the PostgreSQL replication slot (--pg.dsn, --pg.slot), so that the next start copies the table again; the recovery after a dropped publication or removed WAL")
	o.clickhouse.RegisterFlags(fs)
	o.pg.RegisterFlags(fs)
	return fs, o
}

const checkpointUsage = `Usage: tributary checkpoint show|reset [--pipeline NAME] [--checkpoint.file PATH | --clickhouse.* flags] [--resnapshot --pg.* flags]

show prints the pipeline's saved position, event count, save time and
generation. reset forgets it, so that the pipeline starts over from its
configured start, and fences it: a pipeline still running stops at its next
checkpoint, and its next start begins anew. reset --resnapshot also drops the
PostgreSQL source's replication slot, so that the next start creates it again
and copies the table (with --pg.snapshot): the recovery when the slot cannot
continue (its publication was dropped, or the WAL it needs was removed). Rows
written again collapse onto the ones already in ClickHouse.

Checkpoints are read from <database>._tributary_checkpoints in ClickHouse, or
from --checkpoint.file when set. The pipeline is "default" unless --pipeline
(or the run command's --pipeline.name) says otherwise; every flag has the same
TRIBUTARY_* environment twin as in the run command.`

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
	// A flag on the command line wins over the environment, which wins over
	// the default; either spelling counts.
	name := o.pipeline
	switch {
	case cliPipeline:
	case cliPipelineName, fs.Changed("pipeline.name"):
		name = o.pipelineName
	}
	if cliPipeline && cliPipelineName && o.pipelineName != o.pipeline {
		problems = append(problems, fmt.Errorf("--pipeline %q and --pipeline.name %q disagree", o.pipeline, o.pipelineName))
	}
	if strings.TrimSpace(name) == "" {
		problems = append(problems, errors.New("--pipeline must not be empty"))
	}
	if o.file == "" {
		if err := o.clickhouse.Validate(); err != nil {
			problems = append(problems, err)
		}
	}
	if o.resnapshot {
		if action != "reset" {
			problems = append(problems, errors.New("--resnapshot goes with reset"))
		}
		if err := o.pg.Validate(); err != nil {
			problems = append(problems, fmt.Errorf("--resnapshot drops the PostgreSQL source's slot: %w", err))
		}
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
	var store checkpoint.Store
	var where string
	if o.file != "" {
		store, where = filestore.New(o.file), "file "+o.file
	} else {
		s, err := chstore.Open(ctx, o.clickhouse)
		if err != nil {
			return fail(err)
		}
		store, where = s, fmt.Sprintf("ClickHouse %s, table %s.%s", strings.Join(o.clickhouse.Addr, ","), o.clickhouse.Database, chstore.Table)
	}
	defer store.Close()

	cp, found, err := store.Load(ctx, name)
	corrupt := errors.Is(err, checkpoint.ErrCorrupt)
	if err != nil && !(corrupt && action == "reset") {
		return fail(err)
	}
	if action == "show" {
		if !found {
			fmt.Fprintf(stdout, "pipeline %s has no checkpoint in %s%s: it starts from its configured start\n", name, where, generationNote(cp))
			return 0
		}
		fmt.Fprintf(stdout, "pipeline:   %s\nstore:      %s\nposition:   %s\nevents:     %d\nsaved at:   %s\ngeneration: %d\n",
			name, where, cp.Position, cp.Events, cp.SavedAt.UTC().Format(time.RFC3339Nano), cp.Generation)
		return 0
	}

	switch {
	case corrupt:
		fmt.Fprintf(stdout, "the stored checkpoint of pipeline %s cannot be read (%v); resetting it\n", name, err)
		fallthrough
	case found || cp.Generation > 0:
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
	default:
		fmt.Fprintf(stdout, "pipeline %s has no checkpoint in %s: nothing to reset\n", name, where)
	}

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
