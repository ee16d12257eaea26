package swap

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgeswitch/edgeswitch/internal/atomicfile"
	"github.com/edgeswitch/edgeswitch/internal/trusted"
)

// lock takes the switch lock of one app, named what in messages: an flock
// on a file in the state dir, held until release. The kernel drops it when the process dies,
// so a crashed switch never leaves a stale lock. The file keeps the holder's
// PID so a second switch can name it.
func lock(stateDir, name, what string) (release func(), err error) {
	if err := prepareStateDir(stateDir); err != nil {
		return nil, err
	}
	release, holder, err := takeLock(context.Background(), filepath.Join(stateDir, lockFile(name)), 0, false)
	return lockResult(release, holder, err, what)
}

// lockToLook is lock for a dry run, which writes nothing: a shared lock
// on the file, opened read-only (a user who is not root may look), and
// none when there is no lock file yet (no switch ever ran). A switch
// running now still makes it fail fast.
func lockToLook(stateDir, name, what string) (release func(), err error) {
	if _, err := os.Stat(stateDir); err == nil {
		if err := stateDirTrusted(stateDir); err != nil {
			return nil, err
		}
	}
	release, holder, err := takeLock(context.Background(), filepath.Join(stateDir, lockFile(name)), 0, true)
	if errors.Is(err, fs.ErrNotExist) {
		return func() {}, nil
	}
	return lockResult(release, holder, err, what)
}

// lockResult says why a switch lock was not taken.
func lockResult(release func(), holder string, err error, what string) (func(), error) {
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return nil, Usage(fmt.Errorf("another switch of %s is running (pid %s); wait for it to finish", what, holder))
	}
	if err != nil {
		return nil, Usage(err)
	}
	return release, nil
}

// sharedWait bounds the wait for the nginx lock: another switch holds it
// for one write, nginx -t, reload and confirm.
const sharedWait = 2 * time.Minute

// lockNginx takes the lock that switches of all upstreams share for what
// they share: the config file's write, nginx -t, the reload and its
// confirmation. It waits for another switch to be done with them.
func lockNginx(ctx context.Context, stateDir string) (release func(), err error) {
	release, holder, err := takeLock(ctx, filepath.Join(stateDir, nginxLockFile), sharedWait, false)
	switch {
	case errors.Is(err, syscall.EWOULDBLOCK) && ctx.Err() != nil:
		return nil, fmt.Errorf("interrupted (%v) while another switch (pid %s) held nginx's config", context.Cause(ctx), holder)
	case errors.Is(err, syscall.EWOULDBLOCK):
		return nil, fmt.Errorf("another switch (pid %s) has held nginx's config for %s; try again once it is done", holder, sharedWait)
	}
	return release, err
}

const nginxLockFile = "nginx.lock"

// takeLock flocks path, created if missing and never through a symlink,
// waiting up to wait for another holder (0: not at all), and records this
// process's PID in it. A lock still taken then is an error wrapping
// EWOULDBLOCK, with the holder's PID as the file records it. shared is the
// lock of one who only looks: the file opened read-only, not created (an
// error wrapping fs.ErrNotExist), a shared lock, no PID written.
func takeLock(ctx context.Context, path string, wait time.Duration, shared bool) (release func(), holder string, err error) {
	flags, how := os.O_RDWR|os.O_CREATE, syscall.LOCK_EX
	if shared {
		flags, how = os.O_RDONLY, syscall.LOCK_SH
	}
	f, err := os.OpenFile(path, flags|syscall.O_NOFOLLOW, 0o644)
	if errors.Is(err, syscall.ELOOP) {
		return nil, "", fmt.Errorf("lock: %s %w: remove it", path, atomicfile.ErrSymlink)
	}
	if err != nil {
		return nil, "", fmt.Errorf("lock: %w; set state-dir to a writable directory", err)
	}
	deadline := time.Now().Add(wait)
	for {
		err = syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EWOULDBLOCK) || !time.Now().Before(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		pid, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, strings.TrimSpace(string(pid)), err
		}
		return nil, "", fmt.Errorf("lock %s: %w", path, err)
	}
	if shared {
		return func() { f.Close() }, "", nil
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { f.Close() }, "", nil
}

func lockFile(app string) string { return app + ".lock" }

// prepareStateDir creates the state dir when it is missing (0755) and, when
// edgeswitch runs as root, refuses one that anyone but root could change:
// a lock, pending record or history there is written by root.
func prepareStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Usage(fmt.Errorf("state dir: %w; create it or set state-dir to a writable directory", err))
	}
	return stateDirTrusted(dir)
}

// stateDirTrusted is the root part of prepareStateDir, for an existing dir.
func stateDirTrusted(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	if err := trusted.Check(dir); err != nil {
		return Usage(fmt.Errorf("state dir: %w", err))
	}
	return nil
}

// StateFile is one file a switch keeps in the state dir.
type StateFile struct{ Name, About string }

// StateFiles are the files in the state dir, for the man page; APP stands
// for an app's name (its [app.NAME], or its upstream's for a file with one
// app).
func StateFiles() []StateFile {
	const app = "APP"
	return []StateFile{
		{historyFile, "The history: one JSON object per switch attempt, appended."},
		{lockFile(app), "The lock a switch of APP holds while it runs, with its PID."},
		{nginxLockFile, "The lock that switches of all apps take, one at a time, to write nginx's config, test it, reload nginx and confirm."},
		{pendingFile(app), "The record of a switch of APP that has begun to change nginx and not finished (a crash, a power loss); the next switch finishes it, and status shows it."},
	}
}

// lockHolder returns the PID of the process that holds the switch lock of
// app, or 0. It reads the kernel's table of locks (<procRoot>/locks)
// rather than trying the lock: a look must never make a switch that is just
// starting fail on a busy lock.
func lockHolder(procRoot, stateDir, app string) int {
	fi, err := os.Stat(filepath.Join(stateDir, lockFile(app)))
	if err != nil {
		return 0
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0
	}
	// /proc/locks names a file as major:minor:inode, the device numbers in
	// hex: "1: FLOCK  ADVISORY  WRITE 4242 fe:01:1234 0 EOF".
	dev := uint64(st.Dev)
	id := fmt.Sprintf("%02x:%02x:%d", (dev>>8)&0xfff|(dev>>32)&^0xfff, dev&0xff|(dev>>12)&^0xff, st.Ino)
	data, err := os.ReadFile(filepath.Join(procRoot, "locks"))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) >= 6 && f[1] == "FLOCK" && f[5] == id {
			pid, _ := strconv.Atoi(f[4])
			return pid
		}
	}
	return 0
}
