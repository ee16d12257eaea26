package swap

import (
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// hookRig is a switcher of rig's world between slots a and b, to run hooks.
func hookRig(t *testing.T) (*rig, *switcher) {
	r := newRig(t)
	s := &switcher{o: r.o, env: r.env(), res: Result{From: r.o.slot(r.port(a)), To: r.o.slot(r.port(b))}}
	return r, s
}

func TestTailKeepsTheEndOfTheOutput(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{"short output, whole", []string{"one\n", "two\n"}, "one\ntwo\n"},
		{"one large write, its end", []string{strings.Repeat("x", 10) + "0123456789"}, cutMark + " 0123456789"},
		{"many small writes, their end", strings.Split(strings.Repeat("ab", 50), ""), cutMark + " " + strings.Repeat("ab", 5)},
		{"cut inside a rune: from the next one", []string{"xxxxxxxxxxx" + "é" + "012345678"}, cutMark + " 012345678"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := &tail{n: 10}
			for _, w := range tt.writes {
				if n, err := tl.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
				if cap(tl.buf) > 4*tl.n+len(w) {
					t.Errorf("the buffer grew to %d bytes", cap(tl.buf))
				}
			}
			if got := tl.String(); got != tt.want || !utf8.ValidString(got) {
				t.Errorf("String = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestAHookThatRunsForeverIsKilledWithItsChildren: at hook-timeout the
// hook and what it started are killed, and the switch goes on at once.
func TestAHookThatRunsForeverIsKilledWithItsChildren(t *testing.T) {
	_, s := hookRig(t)
	s.o.HookTimeout = 200 * time.Millisecond
	marker := t.TempDir() + "/child"
	t0 := time.Now()
	_, err := s.runHook(t.Context(), []string{"sh", "-c", "trap '' TERM INT; (sleep 3; touch " + marker + ") & sleep 1000"})
	if err == nil || !strings.Contains(err.Error(), "killed with every process it started (hook-timeout 200ms)") {
		t.Errorf("runHook = %v, want killed at hook-timeout 200ms", err)
	}
	if took := time.Since(t0); took > 200*time.Millisecond+hookPipeWait+time.Second {
		t.Errorf("runHook took %s", took)
	}
	time.Sleep(3500 * time.Millisecond)
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("the hook's child outlived it: %s was made", marker)
	}
}

// TestAHookThatLeavesAChildDoesNotHoldTheSwitch: a child in the background
// that keeps the hook's output open is waited for hookPipeWait at most.
func TestAHookThatLeavesAChildDoesNotHoldTheSwitch(t *testing.T) {
	_, s := hookRig(t)
	t0 := time.Now()
	detail, err := s.runHook(t.Context(), []string{"sh", "-c", "echo started; sleep 1000 &"})
	if err != nil || !strings.Contains(detail, "ok started") {
		t.Errorf("runHook = %q, %v; want ok with its output", detail, err)
	}
	if took := time.Since(t0); took > hookPipeWait+time.Second {
		t.Errorf("runHook took %s, want at most hookPipeWait (%s) and a little", took, hookPipeWait)
	}
}

// TestAHooksOutputIsKeptToItsEnd: of 200 KB of output, the error holds
// the last 4 KiB, marked as cut.
func TestAHooksOutputIsKeptToItsEnd(t *testing.T) {
	_, s := hookRig(t)
	_, err := s.runHook(t.Context(), []string{"sh", "-c", "head -c 200000 /dev/zero | tr '\\0' x; echo; echo the end; exit 1"})
	if err == nil {
		t.Fatal("runHook succeeded, want its exit 1")
	}
	msg := err.Error()
	if !strings.Contains(msg, cutMark) || !strings.HasSuffix(msg, "the end") || len(msg) > hookOutputKept+200 {
		t.Errorf("error of %d bytes (%.80q…%q), want at most 4 KiB of output ending in \"the end\", marked cut", len(msg), msg, msg[max(0, len(msg)-20):])
	}
}

// TestAHookRunsInTheRoot: its working directory is /, not wherever
// edgeswitch was started.
func TestAHookRunsInTheRoot(t *testing.T) {
	_, s := hookRig(t)
	t.Chdir(t.TempDir())
	if detail, err := s.runHook(t.Context(), []string{"pwd"}); err != nil || !strings.HasSuffix(detail, "ok /") {
		t.Errorf("runHook(pwd) = %q, %v; want /", detail, err)
	}
}

func TestHookUserRefusals(t *testing.T) {
	if _, err := hookCredential("no-such-user-of-edgeswitch"); ExitCode(err) != 2 || !strings.Contains(err.Error(), "set hook-user to a user of this host") {
		t.Errorf("an unknown user = %v, want exit 2", err)
	}
	if c, err := hookCredential(""); c != nil || err != nil {
		t.Errorf("no hook user = %v, %v; want edgeswitch's own", c, err)
	}
	if os.Geteuid() != 0 {
		if _, err := hookCredential("0"); ExitCode(err) != 2 || !strings.Contains(err.Error(), "only root may run hooks as another user") {
			t.Errorf("root's hooks as a user = %v, want exit 2", err)
		}
		return
	}
	c, err := hookCredential("nobody")
	if err != nil || c == nil || c.Uid == 0 {
		t.Errorf("hookCredential(nobody) = %+v, %v", c, err)
	}
	if c, err := hookCredential("0"); c != nil || err != nil {
		t.Errorf("root's hooks as root = %+v, %v; want no change", c, err)
	}
	// A sudo caller the user database does not know (LDAP, without cgo).
	if c, err := hookCredential("4242424:4343"); err != nil || c == nil || c.Uid != 4242424 || c.Gid != 4343 || len(c.Groups) != 1 || c.Groups[0] != 4343 {
		t.Errorf("hookCredential(4242424:4343) = %+v, %v; want that uid and gid", c, err)
	}
	if _, err := hookCredential("deploy:staff"); ExitCode(err) != 2 || !strings.Contains(err.Error(), "not a user, a UID or UID:GID") {
		t.Errorf("hookCredential(deploy:staff) = %v, want exit 2", err)
	}
}

// TestAHookRunsAsTheHookUser: as root, with hook-user (or the sudo caller)
// set, a hook runs as that user, so a link to a root-only file that the
// caller planted in the hook's way gives them nothing.
func TestAHookRunsAsTheHookUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: only root runs hooks as another user")
	}
	_, s := hookRig(t)
	s.o.HookUser = "nobody"
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("root's only\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(secret), 0o755); err != nil {
		t.Fatal(err)
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	if detail, err := s.runHook(t.Context(), []string{"id", "-u"}); err != nil || !strings.HasSuffix(detail, "ok "+nobody.Uid) {
		t.Errorf("runHook(id -u) = %q, %v; want nobody's uid %s", detail, err, nobody.Uid)
	}
	if _, err := s.runHook(t.Context(), []string{"cat", secret}); err == nil || !strings.Contains(err.Error(), "Permission denied") || strings.Contains(err.Error(), "root's only") {
		t.Errorf("runHook(cat %s) = %v; want permission denied", secret, err)
	}
}

// TestHookProgramsAreFoundBeforeAnythingRuns: a hook's program is a name
// on the hooks' PATH or a full path; a relative path, a missing program or
// a name not on that PATH is refused (exit 2) with what to do.
func TestHookProgramsAreFoundBeforeAnythingRuns(t *testing.T) {
	for _, tt := range []struct {
		argv []string
		says string // "" when it is accepted
	}{
		{[]string{"true"}, ""},
		{[]string{"/bin/true"}, ""},
		{[]string{"bin/deploy"}, "name it by its full path: a relative one"},
		{[]string{"/nonexistent/deploy"}, "install it or fix the hook setting"},
		{[]string{"no-such-hook-program"}, "on the hooks' PATH"},
	} {
		o := defaults()
		o.PostSwitch = tt.argv
		err := o.checkHooks()
		switch {
		case tt.says == "" && err != nil:
			t.Errorf("%q: %v", tt.argv, err)
		case tt.says != "" && (ExitCode(err) != 2 || !strings.Contains(err.Error(), tt.says)):
			t.Errorf("%q: %v, want exit 2 saying %q", tt.argv, err, tt.says)
		}
	}
}
