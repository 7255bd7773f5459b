package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// env is what every subcommand gets: its arguments and where to write.
type env struct {
	args           []string
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)
}

// command is one subcommand. Subcommands register themselves from their own file so that each
// stays beside its flags.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e env) error
}

var commands = map[string]command{}

func register(c command) { commands[c.name] = c }

var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runWithEnv(ctx, args, stdout, stderr, lookupOSEnv)
}

func runWithEnv(ctx context.Context, args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		if len(args) == 0 {
			return fmt.Errorf("%w: a subcommand is required", errUsage)
		}
		return nil
	}
	c, ok := commands[args[0]]
	if !ok {
		usage(stderr)
		return fmt.Errorf("%w: unknown subcommand %q", errUsage, args[0])
	}
	return c.run(ctx, env{args: args[1:], stdout: stdout, stderr: stderr, lookupEnv: lookup})
}

func usage(w io.Writer) {
	var b strings.Builder
	b.WriteString("fhirgate: SMART on FHIR authorization server and secured FHIR R4 API\n\nUsage: fhirgate <command> [flags]\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(&b, "  %-10s %s\n", n, commands[n].summary)
	}
	b.WriteString("\nRun 'fhirgate <command> -h' for the flags of a command.\n")
	io.WriteString(w, b.String())
}
