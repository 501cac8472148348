// Command podman-hpcd is the per-node podman-hpc daemon and its client.
//
//	podman-hpcd serve [--config FILE] [--socket PATH]   run the daemon
//	podman-hpcd status [--socket PATH]                  ask the running daemon
//	podman-hpcd check-config [--config FILE]            check a config file
//	podman-hpcd preflight [--config FILE]               check the node's features
//	podman-hpcd version                                 print the version
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"

	"go.podman.io/storage/pkg/reexec"

	"github.com/podman-hpc/podman-hpc/internal/logging"
	"github.com/podman-hpc/podman-hpc/pkg/hooks"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

const usage = `usage: podman-hpcd COMMAND [OPTIONS]

Container support for Slurm: the per-node daemon and its client.

Commands:
  serve     run the daemon (under systemd with socket activation, or --socket PATH)
  status    show the running daemon's version, runtime, cache and its limits, images,
            containers, pulls in progress and last errors (yours; root sees all);
            exits 1 when the node cannot run containers or the daemon does not answer
  check-config  check the config file as serve would (--config FILE): unknown keys,
            bad values, unusable paths, one line each; serve refuses to start on them
  preflight check, as root, every kernel, file system and tool feature containers
            need, as the daemon uses them, on the config's directories (user
            namespaces, POSIX ACLs, squashfs, idmapped mounts, overlay, the runtime):
            one line each, the fix under each failure; exits 1 when one fails
  pull      pull an image into this node's cache, asking the registry now (podman-hpcd pull REF)
  images    list this node's cached images (yours; root sees all)
  rmi       remove an image from this node's cache (podman-hpcd rmi REF)
  prune     evict images by the cache's size and age limits (--all: every unused one);
            images kept mounted after their last container (image_linger) count as unused
  resolve   print REF pinned to the digest its tag names now (the plugin's helper, run
            as the user in srun and sbatch: one digest per job)
  ps        list this node's running containers (yours; root sees all)
  rm        remove a job's containers on this node (root: the job epilog's safety net),
            or --name NAME: your container_scope=global named container
  import    write an image as a squashfs file of yours, as enroot import does
            (podman-hpcd import [-o FILE] [-f] URI; any --container-image reference)
  export    write a container's filesystem as a squashfs file of yours, every file root's,
            as enroot export; one at a time per user and node, within helper_timeout
            (podman-hpcd export [-o FILE] [-f] [--job JOBID] NAME; a step's own is JOBID.STEPID)
  version   print the version
  help      show this text

Run 'podman-hpcd help COMMAND' (or COMMAND --help) for a command's options.
A command line a command cannot take exits 2; any other failure exits 1.
`

func main() {
	// The image cache re-executes this binary for work done as a user
	// (reading a user's squashfs file); those runs stop here.
	if reexec.Init() {
		return
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command and returns the exit code; split from main for tests.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case hooks.TimedCommand: // run by the OCI runtime as a hook; not listed in usage
		return hooks.RunTimed(rest, os.Stdin, stdout, stderr)
	case "serve":
		err = serveCmd(rest, stdout, stderr)
	case "status":
		err = statusCmd(rest, stdout, stderr)
	case "check-config":
		err = checkConfigCmd(rest, stdout, stderr)
	case "preflight":
		err = preflightCmd(rest, stdout, stderr)
	case "resolve":
		err = resolveCmd(rest, stdout, stderr)
	case "pull", "images", "rmi", "prune", "ps", "rm":
		err = imageCmd(cmd, rest, stdout, stderr)
	case "import", "export":
		err = fileCmd(cmd, rest, stdout, stderr)
	case "init": // inside containers only; not listed in usage
		err = initCmd()
	case "version", "--version":
		if len(rest) > 0 {
			fmt.Fprintf(stderr, "podman-hpcd version: unexpected argument %q\n", rest[0])
			return 2
		}
		fmt.Fprintf(stdout, "podman-hpcd %s\n", version)
	case "help", "--help", "-h":
		if len(rest) > 1 {
			fmt.Fprintf(stderr, "podman-hpcd help: want at most one COMMAND\n\n%s", usage)
			return 2
		}
		if len(rest) == 1 && !slices.Contains([]string{"help", "--help", "-h", "version", "--version", "init", hooks.TimedCommand}, rest[0]) {
			// A command's own help, with its options (an unknown one: exit 2).
			return run([]string{rest[0], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "podman-hpcd: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2 // said already, with the command's usage
	}
	msg := fmt.Sprintf("podman-hpcd: %v\n", err)
	if args[0] == "serve" {
		// Under systemd, the reason the daemon stopped is an error in
		// the journal (journalctl -p err), each of its lines.
		logging.PrefixLines(stderr, msg, logging.PriorityErr, onJournal(stderr))
	} else {
		io.WriteString(stderr, msg)
	}
	return 1
}

// onJournal: w is the systemd journal's stream (logging.Journal).
func onJournal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && logging.Journal(f)
}
