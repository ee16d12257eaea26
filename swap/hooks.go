package swap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/edgeswitch/edgeswitch/internal/trusted"
)

// HookPath is the PATH hooks are looked up on and run with, whoever called
// edgeswitch: what runs as root must not depend on the caller's shell.
const HookPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// runHook runs a hook command (an argv list, no shell) with a fixed, minimal
// environment (HookPath, LANG=C.UTF-8 and the EDGESWITCH_* variables, plus
// extra), and returns the last line of its output for the progress line,
// or an error with its command line and output. {app}, {upstream}, {from}
// and {to} in the arguments become the app, the upstream and the slot
// ports, so that "install the build into the idle slot" needs no script.
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
	cmd := exec.CommandContext(ctx, exe, args[1:]...)
	cmd.Env = append([]string{
		"PATH=" + HookPath,
		"LANG=C.UTF-8",
		"EDGESWITCH_APP=" + s.o.app(),
		"EDGESWITCH_UPSTREAM=" + s.o.Upstream,
		"EDGESWITCH_FROM=" + strconv.Itoa(s.res.From.Port),
		"EDGESWITCH_TO=" + to,
	}, extra...)
	out, err := cmd.CombinedOutput()
	text := strings.TrimSpace(string(out))
	if err != nil {
		return "", fmt.Errorf("hook %q: %w: %s", strings.Join(args, " "), err, text)
	}
	if i := strings.LastIndexByte(text, '\n'); i >= 0 {
		text = text[i+1:]
	}
	return strings.Join(args, " ") + ": ok " + text, nil
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
	}
	return nil
}
