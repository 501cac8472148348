package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/podman-hpc/podman-hpc/internal/config"
)

// checkConfigCmd reports what serve would refuse to start on: unknown keys,
// bad values, unusable paths, one line each; and warnings.
func checkConfigCmd(args []string, stdout, stderr io.Writer) error {
	fl := newFlags("check-config", "check-config [--config FILE]", `
Check the config file as serve would: unknown keys, keys given twice, bad
values, unusable paths, one line each naming the key and the fix; serve
refuses to start on them. Warnings are printed too.`, stdout, stderr)
	configPath := fl.String("config", config.DefaultPath, "config file")
	if _, err := fl.parse(args, 0, 0); err != nil {
		return err
	}
	explicit := false
	fl.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
	_, warnings, err := loadConfig(*configPath, explicit)
	for _, w := range warnings {
		fmt.Fprintf(stderr, "podman-hpcd: warning: %s\n", w)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok\n", *configPath)
	return nil
}

// loadConfig is the config file, loaded and checked (config.Check).
func loadConfig(path string, explicit bool) (config.Config, []string, error) {
	cfg, loadErr := config.Load(path, explicit)
	if loadErr != nil && cfg.Socket == "" {
		return cfg, nil, loadErr // unreadable
	}
	// The lines that loaded are checked too: every problem at once.
	warnings, checkErr := config.Check(cfg)
	if err := errors.Join(loadErr, checkErr); err != nil {
		return cfg, warnings, fmt.Errorf("%s: the config has errors; fix them (podman-hpcd check-config lists them):\n%w", path, err)
	}
	return cfg, warnings, nil
}
