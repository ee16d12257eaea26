package swap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"github.com/edgeswitch/edgeswitch/internal/trusted"
)

// HookPath is the PATH hooks are looked up on and run with, whoever called
// edgeswitch: what runs as root must not depend on the caller's shell.
const HookPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// runHook runs a hook command (an argv list, no shell) with a fixed, minimal
// environment (HookPath, LANG=C.UTF-8 and the EDGESWITCH_* variables, plus
// extra), as the hook user, and returns the last line of its output for the
// progress line, or an error with its command line and the end of its
// output. {app}, {upstream}, {from} and {to} in the arguments become the
// app, the upstream and the slot ports, so that "install the build into
// the idle slot" needs no script.
func (s *switcher) runHook(ctx context.Context, argv []string, extra ...string) (string, error) {
	from := ""
	if s.res.From.Port != 0 {
		from = strconv.Itoa(s.res.From.Port)
	}
	to := strconv.Itoa(s.res.To.Port)
	fill := strings.NewReplacer("{app}", s.o.app(), "{upstream}", s.o.Upstream, "{from}", from, "{to}", to)
	args := make([]string, len(argv))
	for i, a := range argv {
		args[i] = fill.Replace(a)
	}
	exe, err := hookExecutable(args[0])
	if err != nil {
		return "", err
	}
	cred, err := hookCredential(s.o.HookUser)
	if err != nil {
		return "", err
	}
	env := append([]string{
		"PATH=" + HookPath,
		"LANG=C.UTF-8",
		"EDGESWITCH_APP=" + s.o.app(),
		"EDGESWITCH_UPSTREAM=" + s.o.Upstream,
		"EDGESWITCH_FROM=" + strconv.Itoa(s.res.From.Port),
		"EDGESWITCH_TO=" + to,
	}, extra...)
	out := &tail{n: hookOutputKept}
	err = s.scoped(ctx, exe, args[1:], env, cred, out)
	text := strings.TrimSpace(out.String())
	if err != nil {
		return "", fmt.Errorf("hook %q: %w: %s", strings.Join(args, " "), err, text)
	}
	if i := strings.LastIndexByte(text, '\n'); i >= 0 {
		text = text[i+1:]
	}
	return strings.Join(args, " ") + ": ok " + text, nil
}

// hookOutputKept is how much of a hook's output is kept, in memory and in
// the error: its end, where a failing program says why. A hook's output
// goes on into the history, the journal and EDGESWITCH_ERROR.
const hookOutputKept = 4 << 10

// hookPipeWait is how long a hook's output is waited for once it has
// exited or been killed: a child it left in the background may hold the
// pipe, and must not hold the switch.
const hookPipeWait = 2 * time.Second

// hookGate is the shell a hook starts in: it waits until the hook's scope
// holds it (a line on fd 3), then becomes the hook. Nothing the hook runs
// can start outside the scope, not even a setsid child.
const hookGate = `read -r _ <&3 && exec 3<&- && exec "$0" "$@"`

// hookScopes numbers the hooks' scopes of this process.
var hookScopes atomic.Int64

// scoped runs exe with args in a transient scope of its own (a cgroup),
// in a process group of its own, in /, as cred (nil: as edgeswitch). When
// ctx ends (hook-timeout, or Ctrl-C for a pre-start hook) everything in
// the scope is killed; when the hook exits, what it left running is too.
func (s *switcher) scoped(ctx context.Context, exe string, args, env []string, cred *syscall.Credential, out io.Writer) error {
	ctx, cancel := context.WithTimeoutCause(ctx, s.o.HookTimeout, fmt.Errorf("hook-timeout %s", s.o.HookTimeout))
	defer cancel()
	gate, open, err := os.Pipe()
	if err != nil {
		return err
	}
	defer open.Close()
	scope := fmt.Sprintf("edgeswitch-hook-%d-%d.scope", os.Getpid(), hookScopes.Add(1))
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", hookGate, exe}, args...)...)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = env, "/", out, out
	cmd.ExtraFiles = []*os.File{gate}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	cmd.WaitDelay = hookPipeWait
	killAll := func() {
		kctx, kcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer kcancel()
		_ = s.env.Systemd.KillUnitWithTarget(kctx, scope, dbus.All, int32(syscall.SIGKILL)) // gone already: nothing left
	}
	cmd.Cancel = func() error {
		killAll()
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // not yet waited for: the group is still the hook's
	}
	err = cmd.Start()
	gate.Close()
	if err != nil {
		return err
	}
	start := func(ctx context.Context, name, mode string, ch chan<- string) (int, error) {
		return s.env.Systemd.StartTransientUnitContext(ctx, name, mode, []dbus.Property{
			dbus.PropPids(uint32(cmd.Process.Pid)),
			dbus.PropDescription("edgeswitch hook " + exe),
			{Name: "CollectMode", Value: godbus.MakeVariant("inactive-or-failed")},
		}, ch)
	}
	if err := job(ctx, start, scope, s.o.journalctl()); err != nil {
		open.Close() // the gate never opens: the shell exits
		_ = cmd.Wait()
		return fmt.Errorf("put the hook in a scope of its own: %w; check that systemd is reachable over D-Bus", err)
	}
	_, _ = open.Write([]byte("\n"))
	open.Close()
	err = cmd.Wait()
	killAll()
	if cause := context.Cause(ctx); cause != nil {
		return fmt.Errorf("killed with every process it started (%w)", cause)
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		return nil // the hook exited 0; a child it left held its output
	}
	return err
}

// tail keeps the last n bytes written to it, in at most 2n of memory.
type tail struct {
	n   int
	buf []byte
	cut bool // bytes were dropped before buf
}

func (t *tail) Write(p []byte) (int, error) {
	if len(p) >= t.n {
		t.cut = t.cut || len(t.buf) > 0 || len(p) > t.n
		t.buf = append(t.buf[:0], p[len(p)-t.n:]...)
		return len(p), nil
	}
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.n {
		t.buf, t.cut = append(t.buf[:0], t.buf[len(t.buf)-t.n:]...), true
	}
	return len(p), nil
}

// String is what was kept, from a rune's start, marked when cut.
func (t *tail) String() string {
	b, cut := t.buf, t.cut
	if len(b) > t.n {
		b, cut = b[len(b)-t.n:], true
	}
	if !cut {
		return string(b)
	}
	for len(b) > 0 && !utf8.RuneStart(b[0]) {
		b = b[1:]
	}
	return cutMark + " " + string(b)
}

// hookCredential is whom hooks run as: the hook-user setting, a name, a
// UID, or UID:GID as the CLI fills in for the sudo caller (SUDO_UID and
// SUDO_GID, which need no entry in the user database), with the user's
// groups where the database has them; nil for edgeswitch's own user. Only
// root may run them as another user.
func hookCredential(who string) (*syscall.Credential, error) {
	if who == "" {
		return nil, nil
	}
	name, gidText, pair := strings.Cut(who, ":")
	lookup := user.Lookup
	if _, err := strconv.Atoi(name); err == nil {
		lookup = user.LookupId
	}
	u, err := lookup(name)
	if err != nil && !pair {
		return nil, Usage(fmt.Errorf("hook-user %s: %w; set hook-user to a user of this host", who, err))
	}
	if err == nil && !pair {
		name, gidText = u.Uid, u.Gid
	}
	uid, err1 := strconv.ParseUint(name, 10, 32)
	gid, err2 := strconv.ParseUint(gidText, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, Usage(fmt.Errorf("hook-user %s is not a user, a UID or UID:GID: %w", who, err))
	}
	if int(uid) == os.Geteuid() {
		return nil, nil
	}
	if os.Geteuid() != 0 {
		return nil, Usage(fmt.Errorf("hook-user %s: only root may run hooks as another user; drop hook-user or run edgeswitch as root", who))
	}
	c := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{uint32(gid)}}
	if u != nil {
		ids, _ := u.GroupIds()
		for _, id := range ids {
			if g, err := strconv.ParseUint(id, 10, 32); err == nil && uint32(g) != c.Gid {
				c.Groups = append(c.Groups, uint32(g))
			}
		}
	}
	return c, nil
}

// hookExecutable resolves a hook's program: a name without a slash on
// HookPath, a path as it is.
func hookExecutable(name string) (string, error) {
	if strings.Contains(name, "/") {
		if !filepath.IsAbs(name) {
			return "", fmt.Errorf("hook %s: name it by its full path: a relative one would depend on where edgeswitch is run from", name)
		}
		_, err := os.Stat(name)
		return name, err
	}
	for dir := range strings.SplitSeq(HookPath, ":") {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("hook %s: %w on the hooks' PATH (%s); name it by its full path", name, exec.ErrNotFound, HookPath)
}

// checkHooks refuses, before anything runs, a hook whose program is
// missing or, when edgeswitch runs as root, one that anyone but root could
// replace.
func (o Options) checkHooks() error {
	for _, argv := range [][]string{o.PreStart, o.PostSwitch, o.OnFailure} {
		if len(argv) == 0 {
			continue
		}
		exe, err := hookExecutable(argv[0])
		if err == nil && os.Geteuid() == 0 {
			err = trusted.Check(exe)
		}
		if errors.Is(err, os.ErrNotExist) {
			err = fmt.Errorf("hook %s: %w; install it or fix the hook setting", argv[0], err)
		}
		if err != nil {
			return Usage(err)
		}
		if _, err := hookCredential(o.HookUser); err != nil {
			return err
		}
	}
	return nil
}
