package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// fileCommands are import's and export's synopses and help.
var fileCommands = map[string]struct{ synopsis, about string }{
	"import": {"import [-o FILE] [-f] [--socket PATH] URI", `
Write an image as a squashfs file of yours, as enroot import does. URI is any
--container-image reference.`},
	"export": {"export [-o FILE] [-f] [--job JOBID] [--socket PATH] NAME", `
Write a container's filesystem as a squashfs file of yours, every file
root's, as enroot export does; one at a time per user and node, within
helper_timeout. NAME is a named container of yours, or a step's own as
JOBID.STEPID.`},
}

// fileCmd runs enroot's import and export, for scripts written for them:
//
//	podman-hpcd import [-o FILE] [-f] URI    an image as a squashfs file
//	podman-hpcd export [-o FILE] [-f] NAME   a container's filesystem, likewise
//
// The node's daemon writes FILE as the caller (it checks who is on the
// socket), so the file is theirs; a relative FILE is relative to the
// working directory here. Flags may come before or after the argument.
func fileCmd(cmd string, args []string, stdout, stderr io.Writer) error {
	fl := newFlags(cmd, fileCommands[cmd].synopsis, fileCommands[cmd].about, stdout, stderr)
	socket := fl.socketFlag()
	var out string
	var force bool
	fl.StringVar(&out, "o", "", "the squashfs file to write (default: named after the "+map[string]string{"import": "image", "export": "container"}[cmd]+", in this directory)")
	fl.StringVar(&out, "output", "", "same as -o")
	fl.BoolVar(&force, "f", false, "replace FILE if it exists")
	fl.BoolVar(&force, "force", false, "same as -f")
	job := ""
	if cmd == "export" {
		fl.StringVar(&job, "job", os.Getenv("SLURM_JOB_ID"), "the job whose container NAME is (default: $SLURM_JOB_ID; needed only when several jobs have one)")
	}
	pos, err := fl.parse(args, 1, 1)
	if err != nil {
		return err
	}
	arg := pos[0]
	if out == "" {
		if cmd == "import" {
			out = importName(arg)
		} else {
			out = arg + ".sqsh"
		}
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return fmt.Errorf("%s: -o %s: %w", cmd, out, err)
	}
	var req *wire.Message
	if cmd == "import" {
		ref := arg
		if strings.HasPrefix(ref, ".") {
			if a, err := filepath.Abs(ref); err == nil {
				ref = a
			}
		}
		req = wire.New(wire.Import, "ref", ref)
		if auth := readAuthFile(); auth != nil {
			req.Add("auth", string(auth))
		}
		// Where podman:// finds the caller's storage; podman runs as them.
		if home, err := os.UserHomeDir(); err == nil {
			req.Add("home", home)
		}
	} else {
		req = wire.New(wire.Export, "name", arg)
		if job != "" {
			req.Add("job", job)
		}
	}
	req.Add("out", abs)
	if force {
		req.Add("force", "1")
	}
	if _, err := callWithProgress(*socket, req, stderr); err != nil {
		return err
	}
	fmt.Fprintln(stdout, abs)
	return nil
}

// importName is enroot's default file name for an image: the name as
// written, without its scheme, user and registry (docker://USER@REG#NAME),
// with '/', ':' and '@' made '+', and ".sqsh" (docker://ubuntu:22.04 is
// ubuntu+22.04.sqsh, nvcr.io#nvidia/pytorch:24.01 nvidia+pytorch+24.01.sqsh,
// podman://localhost/app:1 localhost+app+1.sqsh). Archives and layouts are
// named after their file and the image in them.
func importName(uri string) string {
	s := uri
	for _, scheme := range []string{"docker://", "podman://", "dockerd://"} {
		s = strings.TrimPrefix(s, scheme)
	}
	for _, t := range []string{"oci:", "oci-archive:", "docker-archive:"} {
		if rest, ok := strings.CutPrefix(s, t); ok {
			path, img, _ := strings.Cut(rest, ":")
			s = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
			if img != "" {
				s += "+" + img
			}
			return plus(s) + ".sqsh"
		}
	}
	if strings.HasPrefix(s, "/") || strings.HasPrefix(s, ".") {
		return plus(strings.TrimSuffix(filepath.Base(s), filepath.Ext(s))) + ".sqsh"
	}
	if _, img, ok := strings.Cut(s, "#"); ok {
		s = img
	} else if user, rest, ok := strings.Cut(s, "@"); ok && !strings.ContainsAny(user, "/:") && !strings.HasPrefix(rest, "sha") {
		s = rest
	}
	return plus(s) + ".sqsh"
}

// plus makes a name one file name: '/', ':' and '@' become '+'.
func plus(s string) string {
	s = strings.NewReplacer("/", "+", ":", "+", "@", "+").Replace(s)
	if strings.Trim(s, ".") == "" {
		return "image"
	}
	return s
}
