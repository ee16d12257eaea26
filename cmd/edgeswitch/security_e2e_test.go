package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/edgeswitch/edgeswitch/internal/testedge"
)

// The root-safety tests run the real binary as root against a sandbox edge
// (design.md, "Running as root"): a state dir, config file or hook program
// that someone other than root could change is refused with exit 2 and one
// error line naming the path and the command that fixes it, before anything
// runs; a symlink planted in the state dir is never written through. Each
// refusal must leave the planted links' targets byte-identical, run no hook
// (a pre-start hook that would touch a marker), start no slot, leave every
// file of nginx's config as it was and traffic on the same slot without a
// failed request. status only looks: it reports such a state dir as a
// problem, and must not read what others planted there.
//
// A hook's environment (the caller's does not reach it, PATH is
// swap.HookPath) is checked by TestHooks in ops_test.go.

// victim is a file a planted symlink points at: root must never write it.
type victim struct {
	path, text string
}

func newVictim(t *testing.T, name string) victim {
	t.Helper()
	v := victim{filepath.Join(t.TempDir(), name), newVictimText(name)}
	writeFile(t, v.path, v.text)
	return v
}

func newVictimText(name string) string { return "precious " + name + ", not edgeswitch's\n" }

func (v victim) assertUnchanged(t *testing.T) {
	t.Helper()
	got, err := os.ReadFile(v.path)
	if err != nil || string(got) != v.text {
		t.Errorf("%s was written through a planted symlink: now %q (%v), was %q", v.path, got, err, v.text)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// mkdirMode makes dir with exactly mode (no umask), owned by root.
func mkdirMode(t *testing.T, dir string, mode os.FileMode) string {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

// touchHook is a pre-start hook, as flags, that creates marker if it runs.
func touchHook(marker string) []string {
	return []string{"--pre-start=/usr/bin/touch", "--pre-start=" + marker}
}

func assertNotRan(t *testing.T, marker string) {
	t.Helper()
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("the hook ran: %s exists", marker)
	}
}

// edgeBefore is what a refused switch must leave as it was.
type edgeBefore struct {
	files map[string]string
	units [2]string
	slot  string
}

func snapshot(t *testing.T, e *testedge.Edge) edgeBefore {
	t.Helper()
	return edgeBefore{
		files: hashTree(t, filepath.Dir(e.NginxConf)),
		units: [2]string{unitState(t, e, e.Ports[0]), unitState(t, e, e.Ports[1])},
		slot:  slotOf(t, e),
	}
}

func (b edgeBefore) assertSame(t *testing.T, e *testedge.Edge) {
	t.Helper()
	assertUnchanged(t, e, b.files)
	for i, port := range e.Ports {
		if st := unitState(t, e, port); st != b.units[i] {
			t.Errorf("slot %d's unit is %s, was %s", port, st, b.units[i])
		}
	}
	if got := slotOf(t, e); got != b.slot {
		t.Errorf("traffic moved from slot %s to %s", b.slot, got)
	}
}

// TestSecurityRefusesWhatOthersCouldChange runs the refusals on one edge:
// each leaves it exactly as it was, so the next starts from the same state.
func TestSecurityRefusesWhatOthersCouldChange(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: these checks apply only when edgeswitch runs as root")
	}
	e := testedge.New(t, testedge.Options{})
	type refusal struct {
		args    []string // the command line before the edge's flags
		extra   []string // after the edge's flags (they win)
		victims []victim
		says    []string // each must be in the one error line
	}
	// plantedInOpenDir: the three links an attacker would plant, in a
	// state dir anyone may write, for command.
	plantedInOpenDir := func(command string) func(t *testing.T, marker string) refusal {
		return func(t *testing.T, marker string) refusal {
			dir := mkdirMode(t, filepath.Join(t.TempDir(), "state"), 0o777)
			v := []victim{newVictim(t, "victim1"), newVictim(t, "victim2"), newVictim(t, "victim3")}
			mkdirMode(t, filepath.Join(dir, "locks"), 0o711)
			symlink(t, v[0].path, filepath.Join(dir, "locks", "app.lock"))
			symlink(t, v[1].path, filepath.Join(dir, "app.pending"))
			symlink(t, v[2].path, filepath.Join(dir, "history.jsonl"))
			return refusal{
				args:    []string{command},
				extra:   append([]string{"--state-dir", dir}, touchHook(marker)...),
				victims: v,
				says:    []string{"state dir", dir + " is writable by group or others", "chmod go-w " + dir},
			}
		}
	}
	cases := []struct {
		name  string
		setup func(t *testing.T, marker string) refusal
	}{
		{"a: a state dir writable by others, with planted symlinks", plantedInOpenDir("switch")},
		{"a: rollback, in a state dir writable by others, with planted symlinks", plantedInOpenDir("rollback")},
		{"b: a root-owned state dir with a planted lock symlink", func(t *testing.T, marker string) refusal {
			dir := mkdirMode(t, filepath.Join(t.TempDir(), "state"), 0o755)
			v := newVictim(t, "victim1")
			link := filepath.Join(mkdirMode(t, filepath.Join(dir, "locks"), 0o711), "app.lock")
			symlink(t, v.path, link)
			return refusal{
				args:    []string{"switch"},
				extra:   append([]string{"--state-dir", dir}, touchHook(marker)...),
				victims: []victim{v},
				says:    []string{link + " is a symlink", "remove it"},
			}
		}},
		{"b: a root-owned state dir with a planted pending symlink to a file", func(t *testing.T, marker string) refusal {
			// The record is read (through the link) before anything starts;
			// the victim is no record, so the switch stops there.
			dir := mkdirMode(t, filepath.Join(t.TempDir(), "state"), 0o755)
			v := newVictim(t, "victim2")
			link := filepath.Join(dir, "app.pending")
			symlink(t, v.path, link)
			return refusal{
				args:    []string{"switch"},
				extra:   append([]string{"--state-dir", dir}, touchHook(marker)...),
				victims: []victim{v},
				says:    []string{link, "remove it"},
			}
		}},
		{"c: a config file writable by others that holds a hook", func(t *testing.T, marker string) refusal {
			conf := filepath.Join(t.TempDir(), "edgeswitch.toml")
			writeFile(t, conf, `pre-start = ["/usr/bin/touch", "`+marker+`"]`+"\n")
			if err := os.Chmod(conf, 0o666); err != nil {
				t.Fatal(err)
			}
			return refusal{
				args: []string{"-c", conf, "switch"},
				says: []string{"config file", conf + " is writable by group or others", "chmod go-w " + conf},
			}
		}},
		{"d: a config file in a directory writable by others", func(t *testing.T, marker string) refusal {
			dir := mkdirMode(t, filepath.Join(t.TempDir(), "open"), 0o777)
			conf := filepath.Join(dir, "edgeswitch.toml")
			writeFile(t, conf, `pre-start = ["/usr/bin/touch", "`+marker+`"]`+"\n")
			return refusal{
				args: []string{"-c", conf, "switch"},
				says: []string{"config file", dir + " (it holds " + conf + ") is writable by group or others", "chmod go-w " + dir},
			}
		}},
		{"e: a hook program writable by others", func(t *testing.T, marker string) refusal {
			script := filepath.Join(t.TempDir(), "install-build")
			writeFile(t, script, "#!/bin/sh\ntouch "+marker+"\n")
			if err := os.Chmod(script, 0o777); err != nil {
				t.Fatal(err)
			}
			return refusal{
				args:  []string{"switch"},
				extra: []string{"--pre-start=" + script},
				says:  []string{script + " is writable by group or others", "chmod go-w " + script},
			}
		}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "hook-ran")
			rf := tt.setup(t, marker)
			before := snapshot(t, e)
			load := startLoad(t, e, 8, http.MethodGet, "/")
			r := runWith(t, e.Env, append(append(rf.args, edgeFlags(e)...), rf.extra...)...)
			stats := load.Stop()
			line := errorLine(t, r.stderr)
			if r.code != 2 {
				t.Errorf("exit %d, want 2:\n%s", r.code, r.stderr)
			}
			for _, s := range rf.says {
				if !strings.Contains(line, s) {
					t.Errorf("the error line does not say %q:\n%s", s, line)
				}
			}
			assertNotRan(t, marker)
			for _, v := range rf.victims {
				v.assertUnchanged(t)
			}
			before.assertSame(t, e)
			if stats.Failed != 0 || stats.Requests == 0 {
				t.Errorf("traffic: %s, want 0 failed", stats)
			}
			t.Logf("%s", line)
		})
	}
}

// TestSecurityPlantedPendingLinkIsNotWrittenThrough: a pending symlink,
// even one whose target does not exist yet, is neither read nor written
// through: the switch refuses it when it looks for an unfinished switch,
// before anything starts, and the target is never created.
func TestSecurityPlantedPendingLinkIsNotWrittenThrough(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: these checks apply only when edgeswitch runs as root")
	}
	e := testedge.New(t, testedge.Options{})
	dir := mkdirMode(t, filepath.Join(t.TempDir(), "state"), 0o755)
	target := filepath.Join(t.TempDir(), "victim2")
	link := filepath.Join(dir, "app.pending")
	symlink(t, target, link)
	before := snapshot(t, e)
	load := startLoad(t, e, 8, http.MethodGet, "/")
	r := runWith(t, e.Env, append([]string{"switch"}, edgeFlags(e, "--state-dir", dir)...)...)
	stats := load.Stop()
	line := errorLine(t, r.stderr)
	if r.code == 0 || !strings.Contains(line, link+" is a symlink") || !strings.Contains(line, "remove it") {
		t.Errorf("exit %d, want a failure naming %s as a symlink to remove:\n%s", r.code, link, r.stderr)
	}
	if r.code != 2 {
		t.Errorf("exit %d, want 2 (refused before anything started):\n%s", r.code, r.stderr)
	}
	if _, err := os.Lstat(target); err == nil {
		t.Errorf("%s was created through the planted link", target)
	}
	before.assertSame(t, e)
	if stats.Failed != 0 || stats.Requests == 0 {
		t.Errorf("traffic: %s, want 0 failed", stats)
	}
}

// TestSecurityPlantedHistoryLinkOnlyWarns: the history is warn-only, so a
// planted history.jsonl symlink does not stop the switch, but it is not
// appended to, and the warning names it.
func TestSecurityPlantedHistoryLinkOnlyWarns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: these checks apply only when edgeswitch runs as root")
	}
	e := testedge.New(t, testedge.Options{})
	dir := mkdirMode(t, filepath.Join(t.TempDir(), "state"), 0o755)
	v := newVictim(t, "victim3")
	link := filepath.Join(dir, "history.jsonl")
	symlink(t, v.path, link)
	load := startLoad(t, e, 8, http.MethodGet, "/")
	r := runWith(t, e.Env, append([]string{"switch"}, edgeFlags(e, "--state-dir", dir)...)...)
	stats := load.Stop()
	if r.code != 0 {
		t.Fatalf("exit %d, want 0 (the history only warns):\n%s", r.code, r.stderr)
	}
	var warning string
	for l := range strings.Lines(r.stderr) {
		if strings.HasPrefix(l, "record") && strings.Contains(l, "warning:") {
			warning = l
		}
	}
	if !strings.Contains(warning, link+" is a symlink") || !strings.Contains(warning, "remove it") {
		t.Errorf("no record warning naming %s as a symlink to remove:\n%s", link, r.stderr)
	}
	v.assertUnchanged(t)
	if got := slotOf(t, e); got != strconv.Itoa(e.Ports[1]) {
		t.Errorf("nginx answers from slot %s, want %d", got, e.Ports[1])
	}
	if stats.Failed != 0 || stats.Requests == 0 {
		t.Errorf("traffic: %s, want 0 failed", stats)
	}
}

// TestSecurityStatusReportsAnUntrustedStateDir: status only looks, so it
// does not refuse a state dir others could change, but it must say so as
// a problem (exit 1) with the fix, and what others planted there must not
// decide its answer.
func TestSecurityStatusReportsAnUntrustedStateDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: these checks apply only when edgeswitch runs as root")
	}
	e := testedge.New(t, testedge.Options{})
	for _, planted := range []bool{false, true} {
		t.Run("planted links "+strconv.FormatBool(planted), func(t *testing.T) {
			dir := mkdirMode(t, filepath.Join(t.TempDir(), "state"), 0o777)
			var vs []victim
			if planted {
				vs = []victim{newVictim(t, "victim2"), newVictim(t, "victim3")}
				symlink(t, vs[0].path, filepath.Join(dir, "app.pending"))
				symlink(t, vs[1].path, filepath.Join(dir, "history.jsonl"))
			}
			r := runWith(t, e.Env, append([]string{"status"}, edgeFlags(e, "--state-dir", dir)...)...)
			t.Logf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
			found := false
			for l := range strings.Lines(r.stdout) {
				if strings.HasPrefix(l, "problem") && strings.Contains(l, "chmod go-w "+dir) {
					found = true
				}
			}
			if r.code != 1 || !found {
				t.Errorf("exit %d, want 1 with a problem line saying chmod go-w %s", r.code, dir)
			}
			for _, v := range vs {
				v.assertUnchanged(t)
			}
			// A JSON error quotes the byte it choked on: root would show
			// the start of any file a pending link points at.
			if leak := "invalid character '" + newVictimText("victim2")[:1] + "'"; planted && strings.Contains(r.stdout+r.stderr, leak) {
				t.Errorf("the output says %q, of the first byte of %s: status read it through the planted link", leak, vs[0].path)
			}
		})
	}
}
