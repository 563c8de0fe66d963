// Package cli holds what every subcommand shares: environment twins of flags.
package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// EnvPrefix starts the environment twin of every flag.
const EnvPrefix = "TRIBUTARY_"

// EnvName returns the environment twin of a flag: --clickhouse.addr is
// TRIBUTARY_CLICKHOUSE_ADDR, --web.listen-address TRIBUTARY_WEB_LISTEN_ADDRESS.
func EnvName(flag string) string {
	r := strings.NewReplacer(".", "_", "-", "_")
	return EnvPrefix + strings.ToUpper(r.Replace(flag))
}

// ApplyEnv sets every flag of fs that the command line did not set from its
// environment twin, if that is set: a set flag wins over the environment.
// lookup is os.LookupEnv in production.
func ApplyEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) error {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var errs []string
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		v, ok := lookup(EnvName(f.Name))
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Sprintf("%s=%q: %v", EnvName(f.Name), v, err))
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("invalid environment: %s", strings.Join(errs, "; "))
	}
	return nil
}
