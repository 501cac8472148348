package hooks

import (
	"errors"
	"fmt"
	"regexp"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	current "go.podman.io/common/pkg/hooks/1.0.0"
)

// compiled holds the hooks' patterns, compiled once: podman's When.Match
// compiles every pattern again for every annotation of every container,
// which was a visible share of a container's start in the daemon's
// profile. The patterns come from the admin's hooks.d files only.
var compiled sync.Map // pattern string: *regexp.Regexp

func rx(pattern string) (*regexp.Regexp, error) {
	if re, ok := compiled.Load(pattern); ok {
		return re.(*regexp.Regexp), nil
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, err
	}
	compiled.Store(pattern, re)
	return re, nil
}

// match is podman's When.Match (go.podman.io/common/pkg/hooks/1.0.0), the
// same conditions in the same order, with the patterns compiled once.
func match(when *current.When, config *specs.Spec, annotations map[string]string, hasBindMounts bool) (bool, error) {
	//lint:ignore SA1019 0.1.0 hooks, which podman still loads, match any of their conditions
	anyOf := when.Or
	matches := 0
	if when.Always != nil {
		if *when.Always {
			if anyOf {
				return true, nil
			}
			matches++
		} else if !anyOf {
			return false, nil
		}
	}
	if when.HasBindMounts != nil {
		if *when.HasBindMounts && hasBindMounts {
			if anyOf {
				return true, nil
			}
			matches++
		} else if !anyOf {
			return false, nil
		}
	}
	for keyPattern, valuePattern := range when.Annotations {
		keyRx, err := rx(keyPattern)
		if err != nil {
			return false, fmt.Errorf("annotation key: %w", err)
		}
		valueRx, err := rx(valuePattern)
		if err != nil {
			return false, fmt.Errorf("annotation value: %w", err)
		}
		ok := false
		for key, value := range annotations {
			if keyRx.MatchString(key) && valueRx.MatchString(value) {
				ok = true
				break
			}
		}
		if ok {
			if anyOf {
				return true, nil
			}
			matches++
		} else if !anyOf {
			return false, nil
		}
	}
	if config.Process != nil && len(when.Commands) > 0 {
		if len(config.Process.Args) == 0 {
			return false, errors.New("process.args must have at least one entry")
		}
		for _, cmdPattern := range when.Commands {
			re, err := rx(cmdPattern)
			if err != nil {
				return false, fmt.Errorf("command: %w", err)
			}
			if re.MatchString(config.Process.Args[0]) {
				return true, nil
			}
		}
		return false, nil
	}
	return matches > 0, nil
}
