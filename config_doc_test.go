package main

import (
	"flag"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/tributary-cdc/tributary/internal/cli"
	"github.com/tributary-cdc/tributary/internal/flagdoc"
)

const configDocPath = "docs/configuration.md"

func init() {
	// Another test file of this package may define -update too; share it.
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite generated files")
	}
}

func updating() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// configDoc renders docs/configuration.md from every registered command.
func configDoc() string {
	cmds := make([]flagdoc.Command, 0, len(commands))
	for _, c := range commands {
		d := flagdoc.Command{Name: c.name, Summary: c.summary}
		if c.flagSet != nil {
			d.Flags = c.flagSet()
		}
		cmds = append(cmds, d)
	}
	return flagdoc.Document(cmds)
}

func TestConfigDoc(t *testing.T) {
	want := configDoc()
	raw, err := os.ReadFile(configDocPath)
	if err != nil && !updating() {
		t.Fatalf("read %s: %v; run `go test . -run TestConfigDoc -update`", configDocPath, err)
	}
	if got := string(raw); got == want {
		return
	} else if !updating() {
		t.Fatalf("docs/configuration.md is stale: run `go test . -run TestConfigDoc -update`\n%s", firstDiff(got, want))
	}
	if err := os.WriteFile(configDocPath, []byte(want), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestConfigDocCoversEveryFlag guards the generator itself: every visible
// flag of every command appears in the document with its environment twin.
func TestConfigDocCoversEveryFlag(t *testing.T) {
	doc := configDoc()
	for _, c := range commands {
		if !strings.Contains(doc, "## tributary "+c.name+"\n") {
			t.Errorf("command %s is missing from the configuration doc", c.name)
		}
		if c.flagSet == nil {
			continue
		}
		for _, g := range flagdoc.ByComponent(c.flagSet()) {
			g.Flags.VisitAll(func(f *pflag.Flag) {
				if !strings.Contains(doc, "| `--"+f.Name+"` | `"+cli.EnvName(f.Name)+"` |") {
					t.Errorf("%s --%s is missing from the configuration doc", c.name, f.Name)
				}
			})
		}
	}
}

// firstDiff describes the first line where got and want differ.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "first difference at line " + strconv.Itoa(i+1) + ":\n  file:      " + gl + "\n  generated: " + wl
		}
	}
	return ""
}
