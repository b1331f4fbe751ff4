// Package config loads each binary's configuration from the environment
// (one envconfig struct per binary), prints it for --help, and dials Temporal.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/kelseyhightower/envconfig"
)

// Load fills spec from the environment. Errors name the variable at fault.
func Load(spec any) error {
	if err := envconfig.Process("", spec); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			return fmt.Errorf("configuration: %s=%q is not a valid %s: %v", pe.KeyName, pe.Value, pe.TypeName, pe.Err)
		}
		return fmt.Errorf("configuration: %w", err)
	}
	return nil
}

// Usage writes every variable of spec with its type, default and description.
func Usage(w io.Writer, binary, summary string, spec any) error {
	fmt.Fprintf(w, "%s: %s\n\nConfiguration (environment variables):\n", binary, summary)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  VARIABLE\tTYPE\tDEFAULT\tDESCRIPTION")
	tmpl := "{{range .}}  {{usage_key .}}\t{{usage_type .}}\t{{usage_default .}}\t{{usage_description .}}\n{{end}}"
	if err := envconfig.Usagef("", spec, tw, tmpl); err != nil {
		return err
	}
	return tw.Flush()
}

// HandleHelp prints Usage and exits when the arguments ask for help.
func HandleHelp(args []string, binary, summary string, spec any) {
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" || a == "help" {
			if err := Usage(os.Stdout, binary, summary, spec); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			os.Exit(0)
		}
	}
}

// Logger builds the process logger from a level name (debug, info, warn, error).
func Logger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("configuration: LOG_LEVEL=%q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

// Keys lists the environment variables spec reads, in declaration order.
func Keys(spec any) ([]string, error) {
	pairs, err := Defaults(spec)
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(pairs))
	for i, p := range pairs {
		keys[i] = p[0]
	}
	return keys, nil
}

// Defaults lists the variables of spec with their defaults ("" for none),
// read from the struct tags.
func Defaults(spec any) ([][2]string, error) {
	var pairs strings.Builder
	if err := envconfig.Usagef("", spec, &pairs, "{{range .}}{{usage_key .}}\t{{usage_default .}}\n{{end}}"); err != nil {
		return nil, err
	}
	var out [][2]string
	for _, kv := range strings.Split(strings.TrimSpace(pairs.String()), "\n") {
		k, v, _ := strings.Cut(kv, "\t")
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

// Invalid marks err as a configuration error ("configuration: ..."),
// unless it already is one.
func Invalid(err error) error {
	if err == nil || strings.HasPrefix(err.Error(), "configuration: ") {
		return err
	}
	return fmt.Errorf("configuration: %w", err)
}
