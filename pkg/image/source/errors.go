package source

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"syscall"

	"github.com/docker/distribution/registry/api/errcode"
	v2 "github.com/docker/distribution/registry/api/v2"
	"go.podman.io/image/v5/docker"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// opError is what the user sees: `verb "ref": kind: detail: hint`, always
// on one line. kind is a sentinel above; cause (may be nil) is the
// underlying error kept for errors.Is/As and for logs.
type opError struct {
	verb, ref string
	kind      error
	detail    string
	hint      string
	cause     error
}

func (e *opError) Error() string {
	var b strings.Builder
	b.WriteString(e.verb)
	b.WriteString(` "`)
	b.WriteString(e.ref)
	b.WriteString(`": `)
	b.WriteString(e.kind.Error())
	if e.detail != "" {
		b.WriteString(": ")
		b.WriteString(e.detail)
	}
	if e.hint != "" {
		b.WriteString(": ")
		b.WriteString(e.hint)
	}
	return oneLine(b.String())
}

func (e *opError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

// oneLine folds the multi-line messages some libraries produce (registry
// error lists, policy errors) so that srun shows a single line.
func oneLine(s string) string {
	// containers/image's notes on its own retries are not for users.
	s = heuristicNote.ReplaceAllString(s, "")
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	f := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	return strings.Join(f, "; ")
}

// Classify turns an error from resolving or pulling ref (from registry,
// when known) into the one line the user sees: `verb "ref": kind: detail:
// hint`, naming the cause and what to do, and wrapping one of package
// image's sentinels (and err, for logs).
func Classify(verb, ref, registry string, err error) error {
	var oe *opError
	if errors.As(err, &oe) {
		oe.verb, oe.ref = verb, ref
		return oe
	}
	e := &opError{verb: verb, ref: ref, cause: err}
	regName := registry
	if regName == "" {
		regName = "the registry"
	} else {
		regName = "registry " + regName
	}
	var unauth docker.ErrUnauthorizedForCredentials
	var ec errcode.ErrorCoder
	var ue docker.UnexpectedHTTPStatusError
	switch {
	case errors.Is(err, image.ErrUnsafeLayer): // package layer's, naming the entry
		e.kind, e.detail, e.hint = image.ErrUnsafeLayer, err.Error(), "the image is refused"
	case errors.Is(err, image.ErrUnsafeFile):
		e.kind, e.detail, e.hint = image.ErrUnsafeFile, without(err, image.ErrUnsafeFile), "the file is refused"
	case errors.Is(err, image.ErrTooLarge):
		e.kind, e.detail, e.hint = image.ErrTooLarge, without(err, image.ErrTooLarge), "ask your admin"
	case errors.Is(err, image.ErrNoSpace) || errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), "no space left on device"):
		e.kind, e.hint = image.ErrNoSpace, "the node's image cache is full: ask your admin, or retry later"
		if errors.Is(err, image.ErrNoSpace) {
			// The store's own refusal says why, and what to do.
			e.detail = without(err, image.ErrNoSpace)
		}
	case errors.As(err, &unauth), errors.Is(err, image.ErrUnauthorized),
		errors.As(err, &ec) && (ec.ErrorCode() == errcode.ErrorCodeUnauthorized || ec.ErrorCode() == errcode.ErrorCodeDenied):
		e.kind, e.detail, e.hint = image.ErrUnauthorized, regName+" refused access", "check the credentials in your auth.json (podman login / docker login), and that you may pull this image"
		if errors.As(err, new(*HelpersError)) {
			e.hint = HelpersNote
		}
	case errors.As(err, &ec) && (ec.ErrorCode() == v2.ErrorCodeManifestUnknown || ec.ErrorCode() == v2.ErrorCodeNameUnknown),
		errors.As(err, &ue) && ue.StatusCode == 404,
		strings.Contains(err.Error(), "manifest unknown"):
		e.kind, e.hint = image.ErrManifestUnknown, "check the image name and tag"
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		e.kind, e.detail, e.hint = image.ErrRegistryUnreachable, regName+" speaks plain HTTP", "an admin must mark it insecure = true in registries.conf"
	case cutShort(err) && registry == "":
		// A local image (a layout, an archive, a user's store): no
		// registry to blame.
		e.kind, e.detail, e.hint = image.ErrIncompleteImage, "its data ends early (cut short or corrupt)", "make the image (or its file or layout) again"
	case cutShort(err):
		e.kind, e.detail, e.hint = image.ErrRegistryFailing, regName+" answered with an empty or cut-short body", "the registry (or a proxy in front of it) is failing: retry later, or tell its admin"
	case errors.Is(err, image.ErrRegistryUnreachable) || (registry != "" && Transient(err)):
		e.kind, e.detail, e.hint = image.ErrRegistryUnreachable, regName+": "+netCause(err), "check the name and that the registry is up, then retry"
	case errors.Is(err, image.ErrPolicy):
		e.kind, e.detail, e.hint = image.ErrPolicy, strings.TrimSuffix(without(err, image.ErrPolicy), "."), "the site's containers-policy.json does not allow it: ask your admin"
	case errors.Is(err, image.ErrPermission):
		e.kind, e.detail, e.hint = image.ErrPermission, without(err, image.ErrPermission), "it is read with your permissions: make it readable by you"
	case errors.Is(err, image.ErrDigestMismatch) && registry == "":
		e.kind, e.detail, e.hint = image.ErrDigestMismatch, without(err, image.ErrDigestMismatch), "the image's data does not match its digest: make the image (or its file or layout) again"
	case errors.Is(err, image.ErrDigestMismatch):
		e.kind, e.detail, e.hint = image.ErrDigestMismatch, without(err, image.ErrDigestMismatch), "the registry or a proxy served corrupt data; retry, or tell the registry's admin"
	default:
		for _, k := range []error{image.ErrIncompleteImage, image.ErrNoImage, image.ErrPolicy, image.ErrShortName, image.ErrBadReference, image.ErrNotSquashfs, image.ErrPermission, image.ErrUnsupported, image.ErrNotFound, image.ErrInUse} {
			if errors.Is(err, k) {
				e.kind, e.detail = k, without(err, k)
				return e
			}
		}
		if errors.Is(err, os.ErrNotExist) {
			e.kind, e.detail, e.hint = os.ErrNotExist, err.Error(), "check the path"
			return e
		}
		if errors.Is(err, errNotRegular) {
			e.kind, e.detail = image.ErrBadReference, err.Error()
			return e
		}
		e.kind = errors.New("failed")
		e.detail = err.Error()
	}
	return e
}

// without is err's text minus the sentinel's, which opError prints first.
func without(err, kind error) string {
	s := strings.Replace(err.Error(), kind.Error()+": ", "", 1)
	if s == kind.Error() {
		return ""
	}
	return s
}

// netCause is the part of a network error a user can act on, without the
// layers of "fetching manifest ... pinging ... Get ..." around it.
func netCause(err error) string {
	var oe *net.OpError
	switch {
	case errors.Is(err, image.ErrRegistryUnreachable):
		return without(err, image.ErrRegistryUnreachable)
	case errors.As(err, &oe):
		return oe.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer in time"
	}
	return err.Error()
}

// HostError carries the registry a short name resolved to, for the
// messages of what failed after it was chosen.
type HostError struct {
	Host string
	Err  error
}

func (e *HostError) Error() string { return e.Err.Error() }
func (e *HostError) Unwrap() error { return e.Err }

// Transient reports whether err is worth another try of the same request:
// the network or the registry failing now. A full disk is not (the retry
// would download the layer again only to fail alike), whatever else the
// error says.
func Transient(err error) bool {
	var ne net.Error
	var ue docker.UnexpectedHTTPStatusError
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), errors.Is(err, image.ErrNoSpace),
		strings.Contains(err.Error(), "no space left on device"):
		return false
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, docker.ErrTooManyRequests):
		return true
	case errors.As(err, &ne):
		return true
	case errors.As(err, &ue):
		return ue.StatusCode >= 500
	}
	return false
}

// HelpersNote is what a user whose auth file names credential helpers is
// told, once per request, and in the error when the registry then refuses.
const HelpersNote = "credential helpers (credsStore/credHelpers) in your auth file are not run on the node; " +
	"put the registry's credentials under auths (podman login --authfile ...)"

// HelpersError marks a request refused by the registry after credential
// helpers were dropped from the user's auth file: Classify then hints at
// HelpersNote.
type HelpersError struct{ Err error }

func (e *HelpersError) Error() string { return e.Err.Error() }

func (e *HelpersError) Unwrap() error { return e.Err }

// heuristicNote is the part of containers/image's blob read errors about
// its own resume heuristic: "(heuristic tuning data: total 0 @1041.186
// ms, ...): ".
var heuristicNote = regexp.MustCompile(`\(heuristic tuning data: [^)]*\):? ?`)

// cutShort reports an answer that ended before its body did: a registry
// that answered, with an empty or truncated blob (not one that could not
// be reached).
func cutShort(err error) bool {
	var oe *net.OpError
	return !errors.As(err, &oe) && !errors.Is(err, context.DeadlineExceeded) &&
		(errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "heuristic tuning data"))
}
