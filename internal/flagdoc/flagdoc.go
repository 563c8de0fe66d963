// Package flagdoc documents flag sets: grouped by component for a command's
// --help, and as the Markdown of docs/configuration.md. A flag's component is
// the part of its name before the first dot (--clickhouse.addr belongs to
// "clickhouse"); flags without a dot belong to "general".
package flagdoc

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"github.com/tributary-cdc/tributary/internal/cli"
)

// General is the component of flags whose name has no dot.
const General = "general"

// Group is the flags of one component.
type Group struct {
	Name  string         // the component: the flags' prefix, or General
	Title string         // a human title, such as "ClickHouse sink"
	Flags *pflag.FlagSet // the component's flags (shared with the original set)
}

// Command is one subcommand for Document.
type Command struct {
	Name    string         // the subcommand, such as "run"
	Summary string         // one line saying what it does
	Flags   *pflag.FlagSet // nil when the command takes no flags
}

// titles and their order; components not listed follow, alphabetically.
var known = []struct{ name, title string }{
	{General, "General"},
	{"source", "Source selection"},
	{"api", "Event-stream API source"},
	{"pg", "PostgreSQL source"},
	{"enrich", "Enrichment"},
	{"mapping", "Mapping"},
	{"clickhouse", "ClickHouse sink"},
	{"sink", "Sink"},
	{"checkpoint", "Checkpoints"},
	{"pipeline", "Pipeline"},
	{"emulator", "Emulator"},
	{"web", "Web server: metrics and health"},
	{"log", "Logging"},
}

// Title returns the human title of component name.
func Title(name string) string {
	for _, k := range known {
		if k.name == name {
			return k.title
		}
	}
	return name
}

func rank(name string) int {
	for i, k := range known {
		if k.name == name {
			return i
		}
	}
	return len(known)
}

// TitleAnnotation, set on a flag (pflag's SetAnnotation) with one value,
// overrides the title of its component's group: the emulator's --pg.* flags
// are its PostgreSQL copy, not the PostgreSQL source.
const TitleAnnotation = "flagdoc-title"

// Component returns the component of a flag name.
func Component(flag string) string {
	if i := strings.IndexByte(flag, '.'); i > 0 {
		return flag[:i]
	}
	return General
}

// ByComponent splits fs into groups by component, in a stable order: the
// known components first (general, sources, sink, checkpoint, pipeline, web,
// log), then the others alphabetically. Hidden flags are left out.
func ByComponent(fs *pflag.FlagSet) []Group {
	if fs == nil {
		return nil
	}
	byName := map[string]*pflag.FlagSet{}
	titles := map[string]string{}
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		c := Component(f.Name)
		if t := f.Annotations[TitleAnnotation]; len(t) == 1 {
			titles[c] = t[0]
		}
		if byName[c] == nil {
			byName[c] = pflag.NewFlagSet(c, pflag.ContinueOnError)
			byName[c].SortFlags = true
		}
		byName[c].AddFlag(f)
	})
	groups := make([]Group, 0, len(byName))
	for name, set := range byName {
		title := Title(name)
		if t, ok := titles[name]; ok {
			title = t
		}
		groups = append(groups, Group{Name: name, Title: title, Flags: set})
	}
	sort.Slice(groups, func(i, j int) bool {
		ri, rj := rank(groups[i].Name), rank(groups[j].Name)
		if ri != rj {
			return ri < rj
		}
		return groups[i].Name < groups[j].Name
	})
	return groups
}

// GroupedUsage writes the flags of groups to w as a command's --help shows
// them: a heading per component, then pflag's usual lines, each followed by
// its environment twin.
func GroupedUsage(w io.Writer, groups []Group) {
	for i, g := range groups {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s:\n", g.Title)
		annotated := pflag.NewFlagSet(g.Name, pflag.ContinueOnError)
		annotated.SortFlags = g.Flags.SortFlags
		g.Flags.VisitAll(func(f *pflag.Flag) {
			c := *f
			c.Usage = f.Usage + " [$" + cli.EnvName(f.Name) + "]"
			annotated.AddFlag(&c)
		})
		fmt.Fprint(w, annotated.FlagUsagesWrapped(0))
	}
}

// Markdown renders groups as Markdown: a "### Title" heading and a table of
// flag, environment twin, type, default and description per group.
func Markdown(groups []Group) string {
	var b strings.Builder
	for i, g := range groups {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "### %s\n\n", g.Title)
		b.WriteString("| Flag | Environment | Type | Default | Description |\n| --- | --- | --- | --- | --- |\n")
		g.Flags.VisitAll(func(f *pflag.Flag) {
			typ, usage := pflag.UnquoteUsage(f)
			if typ == "" {
				typ = f.Value.Type()
			}
			def := "*(empty)*"
			if f.DefValue != "" && f.DefValue != "[]" {
				def = code(f.DefValue)
			}
			fmt.Fprintf(&b, "| `--%s` | `%s` | %s | %s | %s |\n", f.Name, cli.EnvName(f.Name), typ, def, cell(usage))
		})
	}
	return b.String()
}

// Document renders docs/configuration.md from every command's flags.
func Document(cmds []Command) string {
	var b strings.Builder
	b.WriteString(`# Configuration

<!-- Generated from the flag sets by ` + "`go test . -run TestConfigDoc -update`" + `; do not edit. -->

Every flag has an environment twin: ` + "`TRIBUTARY_`" + ` followed by the flag's name in
upper case with dots and dashes turned into underscores (` + "`--clickhouse.addr`" + ` is
` + "`TRIBUTARY_CLICKHOUSE_ADDR`" + `). A flag set on the command line wins over its
environment twin, which wins over the default. Durations take Go's syntax
(` + "`90s`, `5m`, `1h30m`" + `).

Configuration is validated before any connection is made; every problem is
reported at once and the command exits with code 2. Secrets (passwords,
tokens) are best passed through the environment, never logged.

`)
	sorted := append([]Command(nil), cmds...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	b.WriteString("Commands:")
	for _, c := range sorted {
		fmt.Fprintf(&b, " [`%s`](#tributary-%s)", c.Name, c.Name)
	}
	b.WriteString("\n")
	for _, c := range sorted {
		fmt.Fprintf(&b, "\n## tributary %s\n\n%s.\n", c.Name, strings.TrimSuffix(upperFirst(c.Summary), "."))
		groups := ByComponent(c.Flags)
		if len(groups) == 0 {
			b.WriteString("\nNo flags.\n")
			continue
		}
		b.WriteString("\n" + Markdown(groups))
	}
	return b.String()
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// code renders s as inline code, with a fence long enough for its backquotes.
func code(s string) string {
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		return fence + " " + s + " " + fence
	}
	return fence + s + fence
}

// cell escapes s for a Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

// CommandUsage writes a command's --help: the usage line, the summary, and
// its flags grouped by component with their environment twins.
func CommandUsage(w io.Writer, c Command) {
	fmt.Fprintf(w, "Usage: tributary %s [FLAGS]\n\n%s.\n", c.Name, strings.TrimSuffix(upperFirst(c.Summary), "."))
	groups := ByComponent(c.Flags)
	if len(groups) == 0 {
		return
	}
	fmt.Fprintln(w)
	GroupedUsage(w, groups)
	fmt.Fprintln(w, "\nEvery flag has the environment twin shown in brackets; a flag set on the command line wins.")
}
