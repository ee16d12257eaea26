package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRootRefusesWhatOthersCouldChange runs the CLI in-process as root on a
// config file someone else could have written: it must exit 2 naming the
// path and the fix, and run nothing, its hook least of all.
func TestRootRefusesWhatOthersCouldChange(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: these checks apply only when edgeswitch runs as root")
	}
	tests := []struct {
		name string
		conf func(t *testing.T, dir string) string // writes the config, returns its path
		says string
	}{
		{"a config file writable by others", func(t *testing.T, dir string) string {
			return writeMode(t, filepath.Join(dir, "es.toml"), 0o666)
		}, "is writable by group or others (-rw-rw-rw-): chmod go-w "},
		{"a config file in a directory writable by others", func(t *testing.T, dir string) string {
			open := filepath.Join(dir, "open")
			if err := os.Mkdir(open, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(open, 0o777); err != nil {
				t.Fatal(err)
			}
			return writeMode(t, filepath.Join(open, "es.toml"), 0o644)
		}, "/open (it holds "},
		{"a config file of another user", func(t *testing.T, dir string) string {
			p := writeMode(t, filepath.Join(dir, "es.toml"), 0o644)
			if err := os.Chown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			return p
		}, "is owned by uid 65534, not root: chown root:root "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ran := filepath.Join(dir, "hook-ran")
			conf := tt.conf(t, dir)
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), []string{"-c", conf, "switch", "--pre-start=/usr/bin/touch", "--pre-start=" + ran}, &stdout, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tt.says) || strings.Count(stderr.String(), "\n") != 1 {
				t.Errorf("exit %d, want 2 with one line saying %q:\n%s", code, tt.says, stderr.String())
			}
			if _, err := os.Stat(ran); err == nil {
				t.Error("the hook ran")
			}
			// Commands that only print read no settings to act on.
			stdout.Reset()
			if code := run(t.Context(), []string{"-c", conf, "completion", "bash"}, &stdout, &stderr); code != 0 || stdout.Len() == 0 {
				t.Errorf("completion with that config: exit %d", code)
			}
		})
	}
}

// TestSudoTakesPathsAndProgramsOnlyFromTheDefaultConfig: through sudo, a
// flag that runs a program or picks a path would make a sudoers line for
// "edgeswitch switch *" a root shell.
func TestSudoTakesPathsAndProgramsOnlyFromTheDefaultConfig(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: sudo runs edgeswitch as root")
	}
	t.Setenv("SUDO_UID", "1000")
	t.Setenv("EDGESWITCH_CONFIG", "")
	other := writeMode(t, filepath.Join(t.TempDir(), "other.toml"), 0o644)
	for _, tt := range []struct {
		args []string
		says string
	}{
		{[]string{"switch", "--pre-start=/bin/sh"}, "--pre-start cannot be given through sudo"},
		{[]string{"switch", "--post-switch", "/bin/sh"}, "--post-switch cannot be given through sudo"},
		{[]string{"switch", "--on-failure=/bin/sh", "--health-timeout=1ms"}, "--on-failure cannot be given through sudo"},
		{[]string{"switch", "--ports", "22,4001"}, "--ports cannot be given through sudo"},
		{[]string{"switch", "--upstream", "other"}, "--upstream cannot be given through sudo"},
		{[]string{"-c", other, "switch"}, "-c cannot be given through sudo"},
		{[]string{"switch", "--state-dir", "/tmp/x"}, "--state-dir cannot be given through sudo"},
		{[]string{"rollback", "--nginx-conf", "/tmp/nginx.conf"}, "--nginx-conf cannot be given through sudo"},
		{[]string{"status", "--unit", "sshd@.service"}, "--unit cannot be given through sudo"},
		{[]string{"switch", "--hook-user", "root"}, "--hook-user cannot be given through sudo"},
		{[]string{"switch", "--hook-timeout", "1000h"}, "--hook-timeout cannot be given through sudo"},
		{[]string{"switch", "--health-path", "/" + strings.Repeat("h", 70000)}, "--health-path cannot be given through sudo"},
		{[]string{"switch", "--health-status", "100-599"}, "--health-status cannot be given through sudo"},
		{[]string{"switch", "--health-timeout", "1000h"}, "--health-timeout cannot be given through sudo"},
		{[]string{"rollback", "--drain-timeout", "1000h"}, "--drain-timeout cannot be given through sudo"},
		{[]string{"switch", "--reload-timeout", "1000h"}, "--reload-timeout cannot be given through sudo"},
		{[]string{"switch", "--bake", "1m", "--bake-max-5xx", "100%"}, "--bake-max-5xx cannot be given through sudo"},
		{[]string{"status", "--user"}, "--user cannot be given through sudo"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), tt.args, &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), tt.says) || !strings.Contains(stderr.String(), "set it there") {
			t.Errorf("%q: exit %d, want 2 saying %q:\n%s", tt.args, code, tt.says, stderr.String())
		}
	}
	t.Setenv("EDGESWITCH_CONFIG", other)
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"switch"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "EDGESWITCH_CONFIG cannot be given through sudo") {
		t.Errorf("EDGESWITCH_CONFIG through sudo: exit %d\n%s", code, stderr.String())
	}
	// What to switch stays the caller's: --to is checked as usual.
	t.Setenv("EDGESWITCH_CONFIG", "")
	stderr.Reset()
	if code := run(t.Context(), []string{"switch", "--to", "5000", "--dry-run", "--keep-old"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "--to 5000 is not a slot") {
		t.Errorf("--to through sudo: exit %d\n%s", code, stderr.String())
	}
}

func writeMode(t *testing.T, p string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(p, []byte("health-path = \"/\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSudoHooksRunAsTheCallerWhoIsRecorded: through sudo the hooks run as
// SUDO_UID unless the config names hook-user, and the history records
// SUDO_USER, not root.
func TestSudoHooksRunAsTheCallerWhoIsRecorded(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: sudo runs edgeswitch as root")
	}
	t.Setenv("SUDO_UID", "1000")
	t.Setenv("SUDO_GID", "1001")
	t.Setenv("SUDO_USER", "deploy")
	c := &cli{Options: parseSettings(t, "", "")}
	o, err := app{set: c}.options()
	if err != nil || o.HookUser != "1000:1001" {
		t.Errorf("hook user through sudo = %q (%v), want SUDO_UID:SUDO_GID 1000:1001", o.HookUser, err)
	}
	c.HookUser = "builder"
	if o, _ := (app{set: c}).options(); o.HookUser != "builder" {
		t.Errorf("hook user with hook-user set = %q, want builder", o.HookUser)
	}
	if login := (&deps{out: newPrinter(io.Discard, io.Discard, false)}).offline().Login; login != "deploy" {
		t.Errorf("the history records %q, want the sudo caller deploy", login)
	}
}
