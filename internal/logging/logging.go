// Package logging builds tributary's log/slog logger from its flags: JSON by
// default, text on request, at a chosen level, with secrets redacted.
package logging

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"regexp"
	"strings"

	"github.com/spf13/pflag"
)

// Formats and levels accepted by --log.format and --log.level.
const (
	FormatJSON = "json"
	FormatText = "text"
)

// Redacted replaces a secret in logs.
const Redacted = "[REDACTED]"

var levels = map[string]slog.Level{
	"debug": slog.LevelDebug,
	"info":  slog.LevelInfo,
	"warn":  slog.LevelWarn,
	"error": slog.LevelError,
}

// Config is the logging part of the configuration.
type Config struct {
	Format string // FormatJSON or FormatText
	Level  string // debug, info, warn or error
}

// Default returns the configuration the flags default to.
func Default() Config { return Config{Format: FormatJSON, Level: "info"} }

// RegisterFlags adds --log.format and --log.level to fs, bound to c.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	d := Default()
	fs.StringVar(&c.Format, "log.format", d.Format, "log format: json or text")
	fs.StringVar(&c.Level, "log.level", d.Level, "lowest level logged: debug, info, warn or error (debug adds per-batch detail)")
}

// Validate reports every invalid field at once.
func (c Config) Validate() error {
	var errs []error
	switch c.Format {
	case FormatJSON, FormatText:
	default:
		errs = append(errs, fmt.Errorf("--log.format %q: want json or text", c.Format))
	}
	if _, ok := levels[strings.ToLower(c.Level)]; !ok {
		errs = append(errs, fmt.Errorf("--log.level %q: want debug, info, warn or error", c.Level))
	}
	return errors.Join(errs...)
}

// New returns a logger writing to w as cfg says. Attributes whose key names a
// secret (password, token, secret, authorization, api key) are replaced by
// Redacted, and passwords inside attributes whose key names a DSN or URL are
// removed, as a second line of defence behind the Secret type.
func New(cfg Config, w io.Writer) (*slog.Logger, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: levels[strings.ToLower(cfg.Level)], ReplaceAttr: redactAttr}
	var h slog.Handler
	if cfg.Format == FormatText {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h), nil
}

// Secret is a string that never shows in logs or formatted output: its
// LogValue, String, GoString and MarshalText all render Redacted. Reveal
// returns the value itself.
type Secret string

// LogValue renders the secret as Redacted in slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.mask()) }

// String renders the secret as Redacted for fmt's %s and %v.
func (s Secret) String() string { return s.mask() }

// GoString renders the secret as Redacted for fmt's %#v.
func (s Secret) GoString() string { return s.mask() }

// MarshalText renders the secret as Redacted in JSON and other encodings.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.mask()), nil }

// Reveal returns the secret's value, for the one place that needs it.
func (s Secret) Reveal() string { return string(s) }

func (s Secret) mask() string {
	if s == "" {
		return ""
	}
	return Redacted
}

var (
	secretKey = regexp.MustCompile(`(?i)(password|passwd|secret|token|authorization|api[_.-]?key|credential)`)
	urlKey    = regexp.MustCompile(`(?i)(dsn|url|addr|uri|endpoint)`)
	// kvPassword matches password=… in a libpq key/value connection string.
	kvPassword = regexp.MustCompile(`(?i)\b(password|sslpassword)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)
)

// isSecretKey says whether an attribute or flag named key holds a secret;
// a key naming a file (api.token-file) holds a path, not a secret.
func isSecretKey(key string) bool {
	if strings.HasSuffix(strings.ToLower(key), "file") {
		return false
	}
	return secretKey.MatchString(key)
}

func redactAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindGroup:
		return a
	case slog.KindDuration:
		// "8s", not 8000000000: JSON would print nanoseconds.
		return slog.String(a.Key, a.Value.Duration().String())
	}
	if err, ok := a.Value.Any().(error); ok && a.Value.Kind() == slog.KindAny {
		return slog.String(a.Key, RedactText(err.Error()))
	}
	switch {
	case isSecretKey(a.Key):
		if a.Value.Kind() == slog.KindString && a.Value.String() == "" {
			return a
		}
		return slog.String(a.Key, Redacted)
	case urlKey.MatchString(a.Key) && a.Value.Kind() == slog.KindString:
		return slog.String(a.Key, RedactDSN(a.Value.String()))
	case a.Value.Kind() == slog.KindString && strings.Contains(a.Value.String(), "://"):
		return slog.String(a.Key, RedactText(a.Value.String()))
	}
	return a
}

// urlInText matches a URL with userinfo or a query inside free text.
var urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>]+`)

// RedactText returns free text, such as an error message, with every URL in
// it passed through RedactDSN and every libpq password=… removed.
func RedactText(s string) string {
	s = urlInText.ReplaceAllStringFunc(s, RedactDSN)
	return kvPassword.ReplaceAllString(s, "${1}="+Redacted)
}

// RedactDSN returns a connection string or URL with its password and any
// secret-looking query parameter replaced by Redacted: the userinfo password
// of a URL (postgres://u:p@h/db, clickhouse://u:p@h), password=… of a libpq
// key/value string, and query parameters such as ?password=, ?token=.
func RedactDSN(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && (u.User != nil || u.RawQuery != "") {
		if u.User != nil {
			if _, ok := u.User.Password(); ok {
				u.User = url.UserPassword(u.User.Username(), Redacted)
			}
		}
		if u.RawQuery != "" {
			q := u.Query()
			for k := range q {
				if secretKey.MatchString(k) {
					q.Set(k, Redacted)
				}
			}
			u.RawQuery = q.Encode()
		}
		out := u.String()
		// url.String escapes the brackets; keep the marker readable.
		return strings.NewReplacer(url.QueryEscape(Redacted), Redacted, url.PathEscape(Redacted), Redacted).Replace(out)
	}
	return kvPassword.ReplaceAllString(s, "${1}="+Redacted)
}

// Flags returns the flags of fs as attributes, for the configuration summary
// logged at start: only flags set on the command line or from the
// environment, secrets (by name) as Redacted, DSNs and URLs without their
// passwords. Log it as slog.Group("config", logging.Flags(fs)...).
func Flags(fs *pflag.FlagSet) []any {
	var attrs []any
	fs.VisitAll(func(f *pflag.Flag) {
		if !f.Changed {
			return
		}
		v := f.Value.String()
		switch {
		case isSecretKey(f.Name) && v != "":
			v = Redacted
		default:
			v = RedactText(v)
		}
		attrs = append(attrs, slog.String(f.Name, v))
	})
	return attrs
}
