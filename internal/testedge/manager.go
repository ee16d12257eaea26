package testedge

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
)

// managerTimeout bounds how long we wait for a user manager we started, and
// for its D-Bus name to appear.
const managerTimeout = 10 * time.Second

// managerScript starts a systemd user manager on a machine where systemd is
// not PID 1: in a private mount namespace, an empty /run/systemd with a
// system/ directory makes it believe the system was booted with systemd,
// without touching the host's /run/systemd.
const managerScript = "mount -t tmpfs tmpfs /run/systemd && mkdir -p /run/systemd/system && exec /lib/systemd/systemd --user"

// mgr is this process's share of the user manager. Every Edge holds one
// reference; while it has any, the process holds a shared flock on
// testedge-users.lock, so that the manager is only stopped when no process
// (another `go test` package binary, `make demo`) is using it.
var mgr struct {
	sync.Mutex
	users   int
	lock    *os.File // testedge-users.lock, held shared while users > 0
	started int      // pid of the manager this process started, for test logs; 0 when reused
}

// markerName is the file in XDG_RUNTIME_DIR that holds the pid of a manager
// testedge started. Only such a manager is ever stopped: one started by hand
// has no marker and is left alone. Any process may stop it, as the last one
// using it, so parallel test binaries do not leave it behind.
const markerName = "testedge-manager.pid"

func runtimeDir() string { return fmt.Sprintf("/run/user/%d", os.Getuid()) }

// userEnv is the environment that points systemctl and go-systemd's
// NewUserConnectionContext at the user manager and its session bus.
func userEnv() []string {
	rd := runtimeDir()
	return []string{"XDG_RUNTIME_DIR=" + rd, "DBUS_SESSION_BUS_ADDRESS=unix:path=" + rd + "/bus"}
}

// acquireManager makes a user manager reachable over D-Bus, reusing one that
// answers and starting one otherwise (logging to logPath), and takes a
// reference on it that releaseManager gives back.
//
// There is no separate dbus-daemon: the manager's own dbus.socket unit
// (Debian package dbus-user-session) binds $XDG_RUNTIME_DIR/bus and
// socket-activates the bus the manager registers on. Measured on Debian 12
// with systemd 252: a dbus-daemon started before the manager is displaced
// from that path by dbus.socket, and the manager never registers on a bus it
// did not start, so starting one would only leave an idle process behind.
func acquireManager(ctx context.Context, logPath string) error {
	mgr.Lock()
	defer mgr.Unlock()
	for _, kv := range userEnv() {
		k, v, _ := strings.Cut(kv, "=")
		// So that go-systemd in this very process (the e2e tests) finds the bus.
		if err := os.Setenv(k, v); err != nil {
			return err
		}
	}
	if mgr.users > 0 {
		mgr.users++
		return nil
	}
	rd := runtimeDir()
	if err := os.MkdirAll(rd, 0o700); err != nil {
		return fmt.Errorf("creating XDG_RUNTIME_DIR: %w", err)
	}
	// The setup lock makes two processes that find no manager start only one.
	setup, err := lockFile(ctx, filepath.Join(rd, "testedge-setup.lock"), syscall.LOCK_EX)
	if err != nil {
		return err
	}
	defer setup.Close()

	started := false
	if managerAnswers(ctx) {
		removeStaleMarker()
	} else {
		if err := startManager(ctx, logPath); err != nil {
			return err
		}
		started = true
	}
	if err := waitBus(ctx); err != nil {
		if started {
			err = errors.Join(err, stopMarkedManager())
		}
		return err
	}
	users, err := lockFile(ctx, filepath.Join(rd, "testedge-users.lock"), syscall.LOCK_SH)
	if err != nil {
		return err
	}
	mgr.lock, mgr.users = users, 1
	return nil
}

// releaseManager gives back a reference. With the last one, if no other
// process uses the manager either and testedge started it, it is stopped.
func releaseManager() error {
	mgr.Lock()
	defer mgr.Unlock()
	if mgr.users == 0 {
		return nil
	}
	mgr.users--
	if mgr.users > 0 {
		return nil
	}
	users := mgr.lock
	mgr.lock, mgr.started = nil, 0
	defer users.Close()
	ctx, cancel := context.WithTimeout(context.Background(), managerTimeout)
	defer cancel()
	// Hold the setup lock so nobody decides to reuse the manager while we stop it.
	setup, err := lockFile(ctx, filepath.Join(runtimeDir(), "testedge-setup.lock"), syscall.LOCK_EX)
	if err != nil {
		return err
	}
	defer setup.Close()
	if err := syscall.Flock(int(users.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return nil // another process still uses it; the last one stops it
	}
	return stopMarkedManager()
}

// managerAnswers reports whether a user manager answers systemctl within
// managerTimeout: where none runs, systemctl fails at once, and a busy
// machine was seen to take over a second to answer, which made a second
// manager start on top of the first and hide its units. (`is-system-running`
// is no test: it prints "offline" and exits 1 for a working user manager
// here.)
func managerAnswers(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, managerTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "systemctl", "--user", "show", "-p", "Version", "--value")
	cmd.Env = append(os.Environ(), userEnv()...)
	out, err := cmd.Output()
	return err == nil && len(strings.TrimSpace(string(out))) > 0
}

// startManager starts `systemd --user` detached: its own session (so a
// Ctrl-C to the test does not reach it), stdin from /dev/null and output to
// logPath, so it holds none of our pipes (`go test` waits for those).
func startManager(ctx context.Context, logPath string) error {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("systemd user manager log: %w", err)
	}
	defer log.Close()
	cmd := exec.Command("unshare", "-m", "sh", "-c", managerScript)
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), append(userEnv(), "SYSTEMD_LOG_TARGET=console")...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting systemd user manager (unshare -m sh -c %q): %w", managerScript, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }() // reap it if it exits before this process
	// unshare and sh exec, so this is systemd's pid.
	pid := cmd.Process.Pid
	if err := os.WriteFile(filepath.Join(runtimeDir(), markerName), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		_ = cmd.Process.Kill()
		return fmt.Errorf("recording the started user manager: %w", err)
	}
	mgr.started = pid

	deadline := time.Now().Add(managerTimeout)
	for !managerAnswers(ctx) {
		select {
		case <-exited:
			os.Remove(filepath.Join(runtimeDir(), markerName))
			return fmt.Errorf("systemd user manager exited at start (it needs root for the private mount namespace); its log %s:\n%s", logPath, tail(logPath, 20))
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			defer cmd.Process.Kill() // in case it never got as far as exec'ing systemd
			return errors.Join(fmt.Errorf("systemd user manager did not answer `systemctl --user` within %s; its log %s:\n%s", managerTimeout, logPath, tail(logPath, 20)),
				stopMarkedManager())
		}
	}
	return nil
}

// waitBus waits until the manager answers over the session bus, the path
// edgeswitch and go-systemd use. The first connection socket-activates the
// bus, and the manager needs a moment to register its name on it.
func waitBus(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, managerTimeout)
	defer cancel()
	for {
		err := busAnswers(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("systemd user manager runs but does not answer on the session bus %s: %w; "+
				"it gets the bus from its dbus.socket unit (package dbus-user-session): see `systemctl --user status dbus.socket`",
				userEnv()[1], err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func busAnswers(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := sddbus.NewUserConnectionContext(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.SystemStateContext(ctx)
	return err
}

// managerStopTimeout bounds a user manager's stop on SIGTERM: a minute,
// not managerTimeout, as stopping every unit took over 10 s on a busy
// machine and the kill then failed a test that had passed.
const managerStopTimeout = time.Minute

// stopMarkedManager stops the manager named by the marker file, if it is
// still that manager: SIGTERM makes a user manager stop its units and exit;
// SIGKILL if it hangs.
func stopMarkedManager() error {
	path := filepath.Join(runtimeDir(), markerName)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil // none recorded: not ours to stop
	}
	defer os.Remove(path)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !isUserManager(pid) {
		return nil // gone already (or the pid was reused)
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for deadline := time.Now().Add(managerStopTimeout); time.Now().Before(deadline); {
		if !isUserManager(pid) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	return fmt.Errorf("systemd user manager (pid %d) ignored SIGTERM for %s and was killed", pid, managerStopTimeout)
}

// removeStaleMarker drops a marker whose manager is gone (killed, or the
// machine rebooted), so that it can never name a later manager.
func removeStaleMarker() {
	path := filepath.Join(runtimeDir(), markerName)
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err != nil || !isUserManager(pid) {
		os.Remove(path)
	}
}

// isUserManager reports whether pid is a live (not zombie) `systemd --user`.
func isUserManager(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	if i := strings.LastIndexByte(string(stat), ')'); i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' || stat[i+2] == 'X' {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(cmdline), "systemd\x00--user")
}

// lockFile opens path and flocks it (how = LOCK_EX or LOCK_SH), waiting as
// long as ctx allows. The lock goes with the returned file.
func lockFile(ctx context.Context, path string, how int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("testedge lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("testedge lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for testedge lock %s (another test process is starting or stopping the user manager): %w", path, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// tail returns the last n lines of a log file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
