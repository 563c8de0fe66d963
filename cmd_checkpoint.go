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
	chsink "github.com/tributary-cdc/tributary/sink/clickhouse"
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
	clickhouse   chsink.Config
}

func checkpointFlags() (*pflag.FlagSet, *checkpointOptions) {
	o := &checkpointOptions{clickhouse: chsink.DefaultConfig()}
	fs := pflag.NewFlagSet("checkpoint", pflag.ContinueOnError)
	fs.StringVar(&o.pipeline, "pipeline", "", "the pipeline whose checkpoint to show or reset")
	fs.StringVar(&o.pipelineName, "pipeline.name", "", "the same as --pipeline, spelled as the run command spells it")
	fs.StringVar(&o.file, "checkpoint.file", "", "read the checkpoint from this JSON file instead of the ClickHouse table")
	o.clickhouse.RegisterFlags(fs)
	return fs, o
}

const checkpointUsage = `Usage: tributary checkpoint show|reset --pipeline NAME [--checkpoint.file PATH | --clickhouse.* flags]

show prints the pipeline's saved position, event count and save time; reset
forgets it (the pipeline then starts over from its configured start) and
prints what it removed. Checkpoints are read from <database>._tributary_checkpoints
in ClickHouse, or from --checkpoint.file when set.`

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
	if fs.NArg() != 1 || (fs.Arg(0) != "show" && fs.Arg(0) != "reset") {
		problems = append(problems, fmt.Errorf("want exactly one action, show or reset; got %q", fs.Args()))
	}
	name := o.pipelineName
	if cliPipeline || name == "" {
		name = o.pipeline
	}
	if cliPipeline && cliPipelineName && o.pipelineName != o.pipeline {
		problems = append(problems, fmt.Errorf("--pipeline %q and --pipeline.name %q disagree", o.pipeline, o.pipelineName))
	}
	if strings.TrimSpace(name) == "" {
		problems = append(problems, errors.New("--pipeline is required"))
	}
	if o.file == "" {
		if err := o.clickhouse.Validate(); err != nil {
			problems = append(problems, err)
		}
	}
	if len(problems) > 0 {
		return usageErr(errors.Join(problems...))
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
			fmt.Fprintf(stderr, "tributary checkpoint: %v\n", err)
			return 1
		}
		store, where = s, fmt.Sprintf("ClickHouse %s, table %s.%s", strings.Join(o.clickhouse.Addr, ","), o.clickhouse.Database, chstore.Table)
	}
	defer store.Close()

	cp, found, err := store.Load(ctx, name)
	if err != nil {
		fmt.Fprintf(stderr, "tributary checkpoint: %v\n", err)
		return 1
	}
	if !found {
		if fs.Arg(0) == "reset" {
			fmt.Fprintf(stdout, "pipeline %s has no checkpoint in %s: nothing removed\n", name, where)
		} else {
			fmt.Fprintf(stdout, "pipeline %s has no checkpoint in %s: it starts from its configured start\n", name, where)
		}
		return 0
	}
	if fs.Arg(0) == "show" {
		fmt.Fprintf(stdout, "pipeline: %s\nstore:    %s\nposition: %s\nevents:   %d\nsaved at: %s\n",
			name, where, cp.Position, cp.Events, cp.SavedAt.UTC().Format(time.RFC3339Nano))
		return 0
	}
	if err := store.Reset(ctx, name); err != nil {
		fmt.Fprintf(stderr, "tributary checkpoint: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "removed the checkpoint of pipeline %s from %s: position %s, %d events, saved at %s\n",
		name, where, cp.Position, cp.Events, cp.SavedAt.UTC().Format(time.RFC3339Nano))
	return 0
}
