package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/tributary-cdc/tributary/internal/cli"
	"github.com/tributary-cdc/tributary/internal/flagdoc"
)

// parseFlags parses a command's args into fs, then fills the flags the
// command line left unset from their TRIBUTARY_* twins. With --help it prints
// usage and the flags grouped by component. When the command should end now
// it returns done and the exit code (0 for --help, 2 for invalid usage).
func parseFlags(name, usage string, fs *pflag.FlagSet, args []string, stdout, stderr io.Writer) (code int, done bool) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprintln(stdout, usage)
			fmt.Fprintln(stdout)
			flagdoc.GroupedUsage(stdout, flagdoc.ByComponent(fs))
			return 0, true
		}
		fmt.Fprintf(stderr, "tributary %s: %v\nRun 'tributary %s --help' for the flags.\n", name, err, name)
		return 2, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tributary %s: unexpected arguments %q\n", name, fs.Args())
		return 2, true
	}
	if err := cli.ApplyEnv(fs, nil); err != nil {
		fmt.Fprintf(stderr, "tributary %s: %v\n", name, err)
		return 2, true
	}
	return 0, false
}

// invalidConfig reports every configuration problem of a command, one per
// line, and returns exit code 2.
func invalidConfig(name string, err error, stderr io.Writer) int {
	fmt.Fprintf(stderr, "tributary %s: invalid configuration:\n%s\n", name, indentLines(err.Error()))
	return 2
}

// indentLines turns the lines of s into an indented list.
func indentLines(s string) string { return "  - " + strings.ReplaceAll(s, "\n", "\n  - ") }
