package main

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/tributary-cdc/tributary/internal/cli"
)

// TestDeployDocEnvVars checks that every TRIBUTARY_* variable and every
// --component.flag the deployment and operations docs name is a flag (or its
// environment twin) of some command.
func TestDeployDocEnvVars(t *testing.T) {
	twins := map[string]bool{}
	for _, c := range commands {
		if c.flagSet == nil {
			continue
		}
		c.flagSet().VisitAll(func(f *pflag.Flag) { twins[cli.EnvName(f.Name)] = true })
	}
	if c, ok := commands["run"]; !ok || c.flagSet == nil {
		t.Skip("the run command does not expose its flags yet; the docs cannot be checked against them")
	}
	// The emulator's settings are checked once its command exists.
	_, haveEmulate := commands["emulate"]
	emulatorOnly := func(name string) bool {
		return !haveEmulate && (strings.HasPrefix(name, "TRIBUTARY_EMULATOR_") || strings.HasPrefix(name, "--emulator."))
	}
	env := regexp.MustCompile(`\bTRIBUTARY_[A-Z0-9_]+\b`)
	flagRef := regexp.MustCompile(`--[a-z]+\.[a-z0-9.-]*[a-z0-9]`)
	for _, doc := range []string{"docs/deploy.md", "docs/operations.md"} {
		raw, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		var unknown []string
		for _, v := range env.FindAllString(string(raw), -1) {
			if !twins[v] && !strings.HasSuffix(v, "_") && !emulatorOnly(v) {
				unknown = append(unknown, v)
			}
		}
		for _, f := range flagRef.FindAllString(string(raw), -1) {
			if !twins[cli.EnvName(f[2:])] && !emulatorOnly(f) {
				unknown = append(unknown, f)
			}
		}
		sort.Strings(unknown)
		if len(unknown) > 0 {
			t.Errorf("%s names variables or flags that no command has: %s", doc, strings.Join(unknown, ", "))
		}
	}
}
