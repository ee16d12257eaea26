// Package nginx drives the nginx side of a switch: it tests a config with
// nginx -t, reloads the nginx unit over systemd (never restarts it), watches
// the master's worker processes to learn whether a reload took effect and
// when the old workers have drained, and reads nginx's own error log to
// explain a rejected reload.
//
// Every effect comes in as a value (a Runner, a Systemd, a /proc root) so
// tests can pass fakes and the same code runs against the real thing.
package nginx

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"regexp"
	"strings"
)

// Errors callers tell apart with errors.Is.
var (
	// ErrInvalid: nginx -t rejected the config.
	ErrInvalid = errors.New("invalid nginx config")
	// ErrReload: the reload job failed or did not report "done".
	ErrReload = errors.New("nginx reload failed")
	// ErrRejected: nginx did not start a new generation of workers after a
	// reload, which is how a master that rejects the new config (a bind
	// error nginx -t cannot see, for example) shows from outside.
	ErrRejected = errors.New("nginx did not apply the new config")
	// ErrNotActive: the unit is not active, or its master process is gone.
	ErrNotActive = errors.New("nginx is not running")
)

// Runner runs a command and returns its combined output. It is a value so
// tests can fake nginx; ExecRunner is the real one.
type Runner func(ctx context.Context, name string, args ...string) ([]byte, error)

// ExecRunner runs the command with os/exec and returns its combined output.
func ExecRunner(ctx context.Context, name string, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}

// Test runs `bin -t -q -c conf`. When nginx refuses the config the error
// wraps ErrInvalid and holds the command line and nginx's own message, so
// the user sees which directive in which file is wrong.
func Test(ctx context.Context, run Runner, bin, conf string) error {
	args := []string{"-t", "-q", "-c", conf}
	cmdline := bin + " " + strings.Join(args, " ")
	out, err := run(ctx, bin, args...)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s: %w (install nginx or set nginx-bin to its path)", cmdline, err)
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w", cmdline, ctx.Err())
	}
	msg := trimOutput(out)
	if msg == "" {
		msg = err.Error()
	}
	return fmt.Errorf("%w: %s: %s", ErrInvalid, cmdline, msg)
}

// logPrefix matches what nginx puts before a message on stderr: "nginx: "
// from a build that logs there by default, or the error log's
// "2024/01/02 03:04:05 [emerg] 123#123: " from one (Debian's) whose default
// error log is stderr. Only the level is kept.
var logPrefix = regexp.MustCompile(`^(?:nginx: )?(?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d )?(\[[a-z]+\] )?(?:\d+#\d+: )?`)

// trimOutput reduces nginx -t output to its messages on one line, dropping
// the closing "configuration file ... test failed" that ErrInvalid already
// says.
func trimOutput(out []byte) string {
	var msgs []string
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSpace(line)
		m := logPrefix.FindStringSubmatch(line)
		line = m[1] + line[len(m[0]):]
		if line == "" || strings.HasPrefix(line, "configuration file ") && strings.HasSuffix(line, " test failed") {
			continue
		}
		msgs = append(msgs, line)
	}
	return strings.Join(msgs, "; ")
}
