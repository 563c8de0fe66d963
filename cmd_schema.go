package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/tributary-cdc/tributary/checkpoint/chstore"
	"github.com/tributary-cdc/tributary/internal/cli"
	"github.com/tributary-cdc/tributary/internal/flagdoc"
	"github.com/tributary-cdc/tributary/mapping"
	chsink "github.com/tributary-cdc/tributary/sink/clickhouse"
)

func init() {
	register(command{
		name:    "schema",
		summary: "print the ClickHouse DDL of the tables, views, checkpoint and look-up tables (no connection)",
		run:     runSchema,
		flagSet: func() *pflag.FlagSet { fs, _ := schemaFlags(); return fs },
	})
}

// schemaOptions are the schema command's flags.
type schemaOptions struct {
	dialect     string
	database    string
	cluster     string
	replicaPath string
}

func schemaFlags() (*pflag.FlagSet, *schemaOptions) {
	o := &schemaOptions{dialect: string(chsink.Modern), database: chsink.DefaultConfig().Database, replicaPath: chsink.DefaultReplicaPath}
	fs := pflag.NewFlagSet("schema", pflag.ContinueOnError)
	fs.StringVar(&o.dialect, "dialect", o.dialect, "DDL dialect: modern (ClickHouse 21.8 and later) or legacy (18.x to 21.7)")
	fs.StringVar(&o.database, "clickhouse.database", o.database, "ClickHouse database of the tables, views and checkpoints")
	fs.StringVar(&o.cluster, "cluster", o.cluster, "ClickHouse cluster (remote_servers) to print the DDL for: ON CLUSTER, replicated and Distributed tables (as --clickhouse.cluster)")
	fs.StringVar(&o.replicaPath, "replica-path", o.replicaPath, "ZooKeeper path of the replicated tables with --cluster (as --clickhouse.replica-path)")
	return fs, o
}

func runSchema(args []string, stdout, stderr io.Writer) int {
	fs, o := schemaFlags()
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprintln(stdout, "Usage: tributary schema [--dialect modern|legacy] [--clickhouse.database NAME] [--cluster NAME [--replica-path PATH]]")
			fmt.Fprintln(stdout, "\nPrints the statements that create the database, tables, views, the checkpoint table and the enrichment's look-up table.")
			fmt.Fprintln(stdout)
			flagdoc.GroupedUsage(stdout, flagdoc.ByComponent(fs))
			return 0
		}
		fmt.Fprintf(stderr, "tributary schema: %v\n", err)
		return 2
	}
	if err := cli.ApplyEnv(fs, nil); err != nil {
		fmt.Fprintf(stderr, "tributary schema: %v\n", err)
		return 2
	}
	var problems []error
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	d, err := chsink.ParseDialect(o.dialect)
	if err != nil {
		problems = append(problems, fmt.Errorf("--dialect: %w", err))
	}
	cfg := chsink.DefaultConfig()
	cfg.Database = o.database
	cfg.Cluster, cfg.ReplicaPath = o.cluster, o.replicaPath
	if err := cfg.Validate(); err != nil {
		problems = append(problems, err)
	}
	if len(problems) > 0 {
		fmt.Fprintf(stderr, "tributary schema: %v\n", errors.Join(problems...))
		return 2
	}
	c := cfg.ClusterSpec()
	stmts := chsink.RenderClusterDDL(mapping.DefaultSchema(), o.database, d, c)
	stmts = append(stmts, chstore.ClusterDDL(o.database, c), chsink.LookupsDDL(o.database, c))
	if c.Enabled() {
		fmt.Fprintf(stdout, "-- tributary schema: dialect %s, database %s, cluster %s\n\n", d, o.database, c.Name)
	} else {
		fmt.Fprintf(stdout, "-- tributary schema: dialect %s, database %s\n\n", d, o.database)
	}
	fmt.Fprint(stdout, strings.Join(stmts, ";\n\n")+";\n")
	return 0
}
