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
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
)

// Temporal is how a binary reaches the Temporal frontend.
type Temporal struct {
	Address   string `envconfig:"ADDRESS" default:"127.0.0.1:7233" desc:"Temporal frontend host:port"`
	Namespace string `envconfig:"NAMESPACE" default:"default" desc:"Temporal namespace"`
}

// Dial connects a Temporal client, logging through logger.
func (t Temporal) Dial(logger *slog.Logger) (client.Client, error) {
	c, err := client.Dial(client.Options{
		HostPort:  t.Address,
		Namespace: t.Namespace,
		Logger:    tlog.NewStructuredLogger(logger),
	})
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s (TEMPORAL_ADDRESS), namespace %q (TEMPORAL_NAMESPACE): %w", t.Address, t.Namespace, err)
	}
	return c, nil
}

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

// DialLazy returns a Temporal client that connects on first use, so a server
// can start (and report not-ready) while Temporal is still unreachable.
func (t Temporal) DialLazy(logger *slog.Logger) (client.Client, error) {
	c, err := client.NewLazyClient(client.Options{
		HostPort:  t.Address,
		Namespace: t.Namespace,
		Logger:    tlog.NewStructuredLogger(logger),
	})
	if err != nil {
		return nil, fmt.Errorf("Temporal client for %s (TEMPORAL_ADDRESS): %w", t.Address, err)
	}
	return c, nil
}

// Keys lists the environment variables spec reads, in declaration order.
func Keys(spec any) ([]string, error) {
	var b strings.Builder
	if err := envconfig.Usagef("", spec, &b, "{{range .}}{{usage_key .}}\n{{end}}"); err != nil {
		return nil, err
	}
	return strings.Fields(b.String()), nil
}
