package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/edgeswitch/edgeswitch/internal/testedge"
)

// The sudoers line of README's "Security" on the machine set up as README
// says (readyMachine): a deploy user may switch, roll back and look through
// sudo, and nothing more. Through sudo, a flag that would run a program or
// pick a path exits 2 and runs nothing; other edgeswitch commands are not
// in the line at all; without sudo, switch says it needs root.

const machineSudoers = "/etc/sudoers.d/edgeswitch"

// readmeSudoers is README's sudoers line, with edgeswitch where the machine
// has it (/usr/local/bin, README step 1) instead of where the .deb puts it.
func readmeSudoers(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for l := range strings.Lines(string(readme)) {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "deploy" && strings.Contains(l, "NOPASSWD:") {
			if line != "" {
				t.Fatalf("README.md has more than one sudoers line for deploy:\n%s%s", line, l)
			}
			line = strings.TrimSpace(l)
		}
	}
	if line == "" {
		t.Fatal("README.md has no sudoers line for deploy (section Security)")
	}
	if !strings.Contains(line, "/usr/bin/edgeswitch switch") {
		t.Fatalf("README's sudoers line does not name /usr/bin/edgeswitch switch: %s", line)
	}
	return strings.ReplaceAll(line, "/usr/bin/edgeswitch", "/usr/local/bin/edgeswitch") + "\n"
}

// asDeploy runs argv in the machine as the deploy user.
func asDeploy(t *testing.T, m *testedge.Machine, argv ...string) result {
	t.Helper()
	return inMachine(t, m, append([]string{"runuser", "-u", "deploy", "--"}, argv...)...)
}

// sudoLines is stderr without sudo's own warnings (such as "unable to
// resolve host"), which are not edgeswitch's to keep to one line.
func sudoLines(stderr string) string {
	var b strings.Builder
	for l := range strings.Lines(stderr) {
		if !strings.HasPrefix(l, "sudo: ") {
			b.WriteString(l)
		}
	}
	return b.String()
}

// machineState is what a refused command must leave as it was.
type machineState struct {
	files map[string]string
	units map[string]string
	live  string
}

func machineSnapshot(t *testing.T, m *testedge.Machine) machineState {
	t.Helper()
	return machineState{files: machineFiles(t, m), units: machineUnits(t, m), live: machineLive(t, m)}
}

func (b machineState) assertSame(t *testing.T, m *testedge.Machine) {
	t.Helper()
	assertSameFiles(t, b.files, machineFiles(t, m))
	for u, st := range machineUnits(t, m) {
		if st != b.units[u] {
			t.Errorf("%s is %q, was %q", u, st, b.units[u])
		}
	}
	if got := machineLive(t, m); got != b.live {
		t.Errorf("traffic moved from slot %s to %s", b.live, got)
	}
}

// sudoMachine is the machine set up as README says, with the deploy user
// (home /var/lib/deploy) and README's sudoers line, removed when the test
// ends.
func sudoMachine(t *testing.T) *testedge.Machine {
	t.Helper()
	if _, err := os.Stat("/usr/bin/sudo"); err != nil {
		t.Fatalf("needs sudo on the host, which the machine shares: %v (apt-get install sudo, or make deps)", err)
	}
	m := readyMachine(t)
	sudoers := readmeSudoers(t)
	t.Logf("%s: %s", machineSudoers, sudoers)
	// The machine's /home is the host's, read-only: its home goes on the
	// machine's disk.
	mustIn(t, m, "sh", "-c", "id deploy >/dev/null 2>&1 || useradd -m -d /var/lib/deploy deploy")
	if err := m.Install(machineSudoers, []byte(sudoers), 0o440); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mustIn(t, m, "rm", "-f", machineSudoers) })
	mustIn(t, m, "visudo", "-c", "-f", machineSudoers)
	return m
}

func TestSudoGivesADeployUserSwitchAndNothingMore(t *testing.T) {
	m := sudoMachine(t)
	// Each refusal would leave this behind, were it to run its hook.
	b := make([]byte, 4)
	rand.Read(b)
	marker := "/tmp/sudo-hook-ran-" + hex.EncodeToString(b)
	other := "/tmp/other-" + hex.EncodeToString(b) + ".toml"
	// Root's, in root's sticky /tmp: trusted, so only the sudo rule refuses it.
	installIn(t, m, other, fmt.Sprintf("pre-start = [\"/usr/bin/touch\", %q]\nstate-dir = \"/tmp/x\"\n", marker))
	t.Cleanup(func() { mustIn(t, m, "rm", "-f", other, marker) })

	// Each moves the traffic to the other slot, under load, with none lost.
	for _, command := range []string{"switch", "rollback"} {
		t.Run("sudo edgeswitch "+command+" moves traffic", func(t *testing.T) {
			from := machineLive(t, m)
			load := machineLoad(t, m, 8)
			r := asDeploy(t, m, "sudo", "-n", "edgeswitch", command)
			stats := load.Stop()
			if r.code != 0 {
				t.Fatalf("sudo edgeswitch %s as deploy: exit %d\n%s", command, r.code, r.stderr)
			}
			to := otherSlot(from)
			if got := machineLive(t, m); got != to {
				t.Errorf("after %s nginx answers from slot %s, want %s", command, got, to)
			}
			assertSlotUnits(t, m, to, "after sudo edgeswitch "+command)
			if stats.Failed != 0 || stats.Requests == 0 {
				t.Errorf("traffic: %s, want 0 failed", stats)
			}
		})
	}

	t.Run("sudo edgeswitch status answers", func(t *testing.T) {
		live := machineLive(t, m)
		r := asDeploy(t, m, "sudo", "-n", "edgeswitch", "status")
		if r.code != 0 || !strings.Contains(r.stdout, "live      slot "+live) {
			t.Errorf("sudo edgeswitch status as deploy: exit %d, want 0 showing slot %s live:\n%s%s", r.code, live, r.stdout, r.stderr)
		}
	})

	refusals := []struct {
		name string
		argv []string // after runuser -u deploy --
		code int
		says string // in stderr
	}{
		{"a hook on the command line", []string{"sudo", "-n", "edgeswitch", "switch", "--pre-start=/bin/sh", "--pre-start=-c", "--pre-start=touch " + marker},
			2, "--pre-start cannot be given through sudo"},
		{"a post-switch hook on the command line", []string{"sudo", "-n", "edgeswitch", "switch", "--post-switch=/bin/sh", "--post-switch=-c", "--post-switch=touch " + marker},
			2, "--post-switch cannot be given through sudo"},
		{"another config file after switch", []string{"sudo", "-n", "edgeswitch", "switch", "-c", other},
			2, "-c cannot be given through sudo"},
		{"another state dir", []string{"sudo", "-n", "edgeswitch", "switch", "--state-dir", "/tmp/x"},
			2, "--state-dir cannot be given through sudo"},
		{"another nginx config for a rollback", []string{"sudo", "-n", "edgeswitch", "rollback", "--nginx-conf", "/tmp/nginx.conf"},
			2, "--nginx-conf cannot be given through sudo"},
		{"another unit for status", []string{"sudo", "-n", "edgeswitch", "status", "--unit", "ssh@.service"},
			2, "--unit cannot be given through sudo"},
		// Not in the sudoers line: sudo itself refuses (-n: no password
		// prompt, exit 1), edgeswitch never runs.
		{"another config file before switch", []string{"sudo", "-n", "edgeswitch", "-c", other, "switch"},
			1, "sudo: "},
		{"init over root's config", []string{"sudo", "-n", "edgeswitch", "init", "--force", "--dir", "/etc/edgeswitch"},
			1, "sudo: "},
		{"check", []string{"sudo", "-n", "edgeswitch", "check"},
			1, "sudo: "},
		{"another program", []string{"sudo", "-n", "/usr/bin/touch", marker},
			1, "sudo: "},
		// Without sudo.
		{"switch without sudo", []string{"edgeswitch", "switch"},
			2, "edgeswitch switch needs root"},
		{"rollback without sudo", []string{"edgeswitch", "rollback"},
			2, "edgeswitch rollback needs root"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			before := machineSnapshot(t, m)
			config := mustIn(t, m, "sha256sum", machineConfig)
			r := asDeploy(t, m, tt.argv...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.says) {
				t.Errorf("%s: exit %d, want %d saying %q:\n%s%s", strings.Join(tt.argv, " "), r.code, tt.code, tt.says, r.stdout, r.stderr)
			}
			if tt.code == 2 {
				// edgeswitch refused: one line, naming the setting and where it goes.
				if got := sudoLines(r.stderr); strings.Count(got, "\n") != 1 || !strings.HasPrefix(got, "edgeswitch: ") {
					t.Errorf("want one error line, got:\n%s", got)
				}
				if strings.Contains(tt.says, "through sudo") && !strings.Contains(r.stderr, machineConfig) {
					t.Errorf("the refusal does not name %s, where the setting goes:\n%s", machineConfig, r.stderr)
				}
			}
			t.Logf("%s", strings.TrimSpace(r.stderr))
			if r := inMachine(t, m, "test", "-e", marker); r.code == 0 {
				t.Errorf("%s ran the hook: %s exists", strings.Join(tt.argv, " "), marker)
			}
			if r := inMachine(t, m, "test", "-e", "/tmp/x"); r.code == 0 {
				t.Errorf("%s created the state dir /tmp/x", strings.Join(tt.argv, " "))
			}
			if got := mustIn(t, m, "sha256sum", machineConfig); got != config {
				t.Errorf("%s changed", machineConfig)
			}
			before.assertSame(t, m)
		})
	}

	t.Run("status without sudo", func(t *testing.T) {
		live := machineLive(t, m)
		r := asDeploy(t, m, "edgeswitch", "status")
		t.Logf("edgeswitch status as deploy: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		if r.code != 0 || !strings.Contains(r.stdout, "live      slot "+live) {
			t.Errorf("edgeswitch status as deploy: exit %d, want 0 showing slot %s live:\n%s%s", r.code, live, r.stdout, r.stderr)
		}
	})
}

// TestSudoHooksRunAsTheDeployUser: through sudo, README's install hook runs
// as deploy, so a link deploy planted to /etc/shadow gives them nothing:
// the switch fails, traffic stays. Then a deploy works, recorded as
// deploy's, in a 0640 history, and nobody can take its locks.
func TestSudoHooksRunAsTheDeployUser(t *testing.T) {
	m := sudoMachine(t)
	slotDir := "/var/lib/deploy/slot-{to}"
	installIn(t, m, machineConfig, machineSettings+fmt.Sprintf("pre-start = [\"install\", \"-m\", \"0644\", \"/var/lib/deploy/app.jar\", %q]\n", slotDir+"/app.jar"))
	t.Cleanup(func() { installIn(t, m, machineConfig, machineSettings) })
	for _, port := range machineSlots {
		mustIn(t, m, "runuser", "-u", "deploy", "--", "mkdir", "-p", strings.ReplaceAll(slotDir, "{to}", port))
	}
	t.Cleanup(func() { mustIn(t, m, "sh", "-c", "rm -rf /var/lib/deploy/slot-* /var/lib/deploy/app.jar") })

	t.Run("a link to /etc/shadow is not read", func(t *testing.T) {
		mustIn(t, m, "runuser", "-u", "deploy", "--", "ln", "-sfn", "/etc/shadow", "/var/lib/deploy/app.jar")
		before := machineSnapshot(t, m)
		r := asDeploy(t, m, "sudo", "-n", "edgeswitch", "switch")
		if r.code != 1 || !strings.Contains(r.stderr, "Permission denied") {
			t.Errorf("switch with app.jar -> /etc/shadow: exit %d, want 1 with install's permission denied:\n%s", r.code, r.stderr)
		}
		if got := inMachine(t, m, "sh", "-c", "cat /var/lib/deploy/slot-*/app.jar"); strings.Contains(got.stdout, "root:") {
			t.Errorf("the hook copied /etc/shadow into the slot:\n%s", got.stdout)
		}
		before.assertSame(t, m)
	})

	t.Run("a build is installed as deploy and recorded as deploy's", func(t *testing.T) {
		mustIn(t, m, "runuser", "-u", "deploy", "--", "sh", "-c", "rm -f /var/lib/deploy/app.jar && echo build > /var/lib/deploy/app.jar")
		from := machineLive(t, m)
		r := asDeploy(t, m, "sudo", "-n", "edgeswitch", "switch")
		if r.code != 0 {
			t.Fatalf("switch: exit %d\n%s", r.code, r.stderr)
		}
		to := otherSlot(from)
		if owner := strings.TrimSpace(mustIn(t, m, "stat", "-c", "%U", strings.ReplaceAll(slotDir, "{to}", to)+"/app.jar")); owner != "deploy" {
			t.Errorf("the build in slot %s is %s's, want deploy's", to, owner)
		}
		last := mustIn(t, m, "sh", "-c", "tail -n 1 /var/lib/edgeswitch/history.jsonl")
		if !strings.Contains(last, `"user":"deploy"`) {
			t.Errorf("the history's last record does not name deploy: %s", last)
		}
		if mode := strings.TrimSpace(mustIn(t, m, "stat", "-c", "%a", "/var/lib/edgeswitch/history.jsonl")); mode != "640" {
			t.Errorf("history mode %s, want 640", mode)
		}
		for _, lock := range []string{"/var/lib/edgeswitch/locks/app.lock", "/var/lib/edgeswitch/locks/nginx.lock"} {
			r := inMachine(t, m, "runuser", "-u", "nobody", "--", "flock", "--nonblock", "--shared", lock, "true")
			if r.code == 0 || !strings.Contains(r.stderr, "Permission denied") {
				t.Errorf("nobody's flock on %s: exit %d, want EACCES:\n%s", lock, r.code, r.stderr)
			}
		}
	})
}
