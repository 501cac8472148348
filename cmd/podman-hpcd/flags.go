package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/podman-hpc/podman-hpc/internal/config"
)

// errUsage is a command line a command cannot take: its message and the
// command's usage are printed already, and run exits 2 (the convention of
// getopt's programs and Slurm's commands; other errors exit 1).
var errUsage = errors.New("usage error")

// cmdFlags is one command's options, and its help: "usage: podman-hpcd
// SYNOPSIS", what it does, and its options.
type cmdFlags struct {
	*flag.FlagSet
	synopsis, about string
	stdout          io.Writer // where -h and --help print the help
}

// newFlags returns command name's options. Errors, and the usage after
// them, go to stderr; the help asked for (-h, --help) to stdout.
func newFlags(name, synopsis, about string, stdout, stderr io.Writer) *cmdFlags {
	fl := &cmdFlags{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), synopsis: synopsis, about: strings.TrimSpace(about), stdout: stdout}
	fl.SetOutput(stderr)
	fl.Usage = func() {} // parse prints it, where it belongs
	return fl
}

// printUsage writes the command's help to w.
func (fl *cmdFlags) printUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: podman-hpcd %s\n\n%s\n", fl.synopsis, fl.about)
	n := 0
	fl.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintf(w, "\nOptions:\n")
		out := fl.Output()
		fl.SetOutput(w)
		fl.PrintDefaults()
		fl.SetOutput(out)
	}
}

// socketFlag adds --socket, the daemon's socket, that the client commands take.
func (fl *cmdFlags) socketFlag() *string {
	return fl.String("socket", config.DefaultSocket, "the daemon's socket")
}

// parse parses args, options before or after the arguments ("--" ends
// the options), and returns the arguments. Fewer than min or more than
// max (-1: any number) is a usage error (errUsage), as is a bad option;
// -h or --help prints the help and returns flag.ErrHelp.
func (fl *cmdFlags) parse(args []string, min, max int) ([]string, error) {
	var pos []string
	for {
		if err := fl.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fl.printUsage(fl.stdout)
				return nil, err
			}
			fl.printUsage(fl.Output()) // after flag's own message
			return nil, errUsage
		}
		rest := fl.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := args[:len(args)-len(rest)]; len(consumed) > 0 && consumed[len(consumed)-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	switch {
	case len(pos) < min:
		return nil, fl.usageError("missing argument")
	case max >= 0 && len(pos) > max:
		return nil, fl.usageError("unexpected argument %q", pos[max])
	}
	return pos, nil
}

// usageError prints "podman-hpcd COMMAND: MESSAGE" and the command's
// usage on stderr, and returns errUsage.
func (fl *cmdFlags) usageError(format string, a ...any) error {
	fmt.Fprintf(fl.Output(), "podman-hpcd %s: %s\n", fl.Name(), fmt.Sprintf(format, a...))
	fl.printUsage(fl.Output())
	return errUsage
}
