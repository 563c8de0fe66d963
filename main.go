// Command tributary replicates an insurance platform's event stream (the
// Socotra event-stream API, or a PostgreSQL table through logical
// replication) into ClickHouse.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"

	"github.com/spf13/pflag"
)

// Set by -ldflags in the Makefile.
var (
	version = "dev"
	commit  = "unknown"
)

// command is one subcommand; run gets the arguments after the subcommand's
// name and returns the exit code (2 for invalid usage or configuration).
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
	// flagSet, when set, returns a fresh copy of the command's flags, used to
	// generate docs/configuration.md and grouped --help.
	flagSet func() *pflag.FlagSet
}

// commands is filled by the cmd_*.go files' init functions.
var commands = map[string]command{}

func register(c command) { commands[c.name] = c }

func main() { os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr)) }

func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	case "--version":
		args[0] = "version"
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "tributary: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	return c.run(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "tributary replicates an insurance platform's event stream into ClickHouse.")
	fmt.Fprintln(w, "\nUsage: tributary COMMAND [FLAGS]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'tributary COMMAND --help' for a command's flags. Every flag has an")
	fmt.Fprintln(w, "environment twin: --clickhouse.addr is TRIBUTARY_CLICKHOUSE_ADDR; a set flag wins.")
}

func init() {
	register(command{name: "version", summary: "print the version, commit and Go version", run: runVersion})
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] != "--help" && args[0] != "-h" {
		fmt.Fprintf(stderr, "tributary version: takes no arguments\n")
		return 2
	}
	fmt.Fprintf(stdout, "tributary %s (commit %s, %s %s/%s)\n", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return 0
}
