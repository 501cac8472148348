// Package charge says where a helper process that the daemon starts for a
// request (podman save for a podman:// image, mksquashfs for a save or an
// export) is to be charged: into the cgroups of the step or the user it
// works for, so that their limits, accounting and end reach it, rather
// than the daemon's.
//
// The request's handler puts a Placer in the context; the code that starts
// a helper calls Place with the helper's pid as soon as it has started,
// and stops the helper if Place fails. A context without a Placer places
// nothing.
package charge

import "context"

// A Placer moves a process (its whole thread group) where the request's
// processes belong.
type Placer func(pid int) error

type key struct{}

// With returns ctx whose helpers go where p puts them.
func With(ctx context.Context, p Placer) context.Context {
	return context.WithValue(ctx, key{}, p)
}

// Of is ctx's Placer, nil if it has none.
func Of(ctx context.Context) Placer {
	p, _ := ctx.Value(key{}).(Placer)
	return p
}

// Place moves pid where ctx's Placer says; without one, it does nothing.
func Place(ctx context.Context, pid int) error {
	if p, ok := ctx.Value(key{}).(Placer); ok && p != nil {
		return p(pid)
	}
	return nil
}
