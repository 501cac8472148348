//go:build race

package store

// The race detector slows everything several-fold; latency targets are
// not checked under it.
func init() { raceEnabled = true }
