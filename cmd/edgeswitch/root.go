package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/alecthomas/kong"
	"github.com/edgeswitch/edgeswitch/internal/trusted"
	"github.com/edgeswitch/edgeswitch/swap"
)

// edgeswitch runs as root: it starts units, writes nginx's config and runs
// hooks. What it acts on must be what root chose, not what a local user or
// a sudo caller could slip in.

// trusted refuses, when edgeswitch runs as root, a config file that anyone
// but root could change: its hooks would run as root. One that holds no
// setting (missing, empty, /dev/null) gives nothing to act on.
func (r *tomlResolver) trusted() error {
	if os.Geteuid() != 0 || len(r.values) == 0 && len(r.apps) == 0 {
		return nil
	}
	if err := trusted.Check(r.path); err != nil {
		return swap.Usage(fmt.Errorf("config file: %w; edgeswitch runs nothing from it until then", err))
	}
	return nil
}

// underSudo reports whether root runs edgeswitch on behalf of another user.
func underSudo() bool { return os.Geteuid() == 0 && os.Getenv("SUDO_UID") != "" }

func sudoRefusal(what string) error {
	return swap.Usage(fmt.Errorf("%s cannot be given through sudo: settings that run a program, pick a path or set root's limits come only from %s, which only root can change; set it there", what, defaultConfig))
}

// sudoConfig refuses another config file than the default through sudo.
func sudoConfig(flag string) error {
	switch {
	case flag != "":
		return sudoRefusal("-c")
	case os.Getenv("EDGESWITCH_CONFIG") != "":
		return sudoRefusal("EDGESWITCH_CONFIG")
	}
	return nil
}

// sudoFlags refuses the settings tagged sudo:"config" (swap.Options) given
// on the command line: a sudoers line for "edgeswitch switch *" must not
// let the caller pass --on-failure=/bin/sh, nor point the switch at
// another upstream or at app@22.service. kong's path holds the flags it
// parsed from the arguments, and those the config file gave, marked
// Resolved: those are root's.
func sudoFlags(kctx *kong.Context) error {
	for _, p := range kctx.Path {
		if p.Flag != nil && !p.Resolved && p.Flag.Tag.Get("sudo") == "config" {
			return sudoRefusal("--" + p.Flag.Name)
		}
	}
	return nil
}

// needRoot refuses a command that changes units and nginx's config when
// not run as root, unless it only shows (a dry run) or drives the caller's
// own user manager.
func needRoot(command string, dryRun, userManager bool) error {
	if os.Geteuid() == 0 || dryRun || userManager {
		return nil
	}
	return swap.Usage(errors.New("edgeswitch " + command + " needs root: it starts units and writes nginx's config; run it with sudo (README, Security), or pass --user for your own systemd user manager"))
}
