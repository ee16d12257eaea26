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
// on a file in the state dir's lock dir, held until release. The kernel
// drops it when the process dies, so a crashed switch never leaves a stale
// lock. The file keeps the holder's PID for people who look.
func lock(procRoot, stateDir, name, what string) (release func(), err error) {
	if err := prepareStateDir(stateDir); err != nil {
		return nil, err
	}
	path := filepath.Join(stateDir, lockFile(name))
	release, err = takeLock(context.Background(), path, 0, false)
	return lockResult(release, err, procRoot, path, what)
}

// lockToLook is lock for a dry run, which writes nothing and may be run by
// anyone: as root, a shared lock on the file, opened read-only and not
// created (none when no switch ever ran); as another user, who may not
// open the file (0600), a look at the kernel's table of locks. A switch
// running now makes it fail fast either way.
func lockToLook(procRoot, stateDir, name, what string) (release func(), err error) {
	if _, err := os.Stat(stateDir); err == nil {
		if err := stateDirTrusted(stateDir); err != nil {
			return nil, err
		}
	}
	path := filepath.Join(stateDir, lockFile(name))
	if os.Geteuid() != 0 {
		if lockHolder(procRoot, path) != 0 {
			return nil, Usage(busy(procRoot, path, what))
		}
		return func() {}, nil
	}
	release, err = takeLock(context.Background(), path, 0, true)
	if errors.Is(err, fs.ErrNotExist) {
		return func() {}, nil
	}
	return lockResult(release, err, procRoot, path, what)
}

// lockResult says why a switch lock was not taken.
func lockResult(release func(), err error, procRoot, path, what string) (func(), error) {
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return nil, Usage(busy(procRoot, path, what))
	}
	if err != nil {
		return nil, Usage(err)
	}
	return release, nil
}

// busy says who holds the lock on path that a switch of what wants.
func busy(procRoot, path, what string) error {
	who, aSwitch := holder(procRoot, path)
	if aSwitch {
		return fmt.Errorf("another switch of %s is running (%s); wait for it to finish", what, who)
	}
	return fmt.Errorf("%s is held by %s, which is not an edgeswitch switch; stop it, then run the switch again", path, who)
}

// holder names the process that holds the lock on path: the PID the
// kernel's table of locks gives (else the one the file records), and,
// when it is not another switch (only root may open the file, but root
// may run flock by hand), its program and command line, so that it can
// be found.
func holder(procRoot, path string) (who string, aSwitch bool) {
	pid := lockHolder(procRoot, path)
	if pid == 0 {
		data, _ := os.ReadFile(path)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(data)))
	}
	if pid == 0 {
		return "pid unknown", true
	}
	comm, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "comm"))
	self, _ := os.ReadFile(filepath.Join(procRoot, "self", "comm"))
	if err != nil || string(comm) == string(self) {
		return "pid " + strconv.Itoa(pid), true
	}
	cmdline, _ := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "cmdline"))
	args := strings.TrimRight(strings.ReplaceAll(string(cmdline), "\x00", " "), " ")
	return fmt.Sprintf("pid %d (%q: %q)", pid, strings.TrimSpace(string(comm)), cut(args, 200)), false
}

// sharedWait bounds the wait for the nginx lock: another switch holds it
// for one write, nginx -t, reload and confirm.
const sharedWait = 2 * time.Minute

// lockNginx takes the lock that switches of all upstreams share for what
// they share: the config file's write, nginx -t, the reload and its
// confirmation. It waits for another switch to be done with them.
func lockNginx(ctx context.Context, procRoot, stateDir string) (release func(), err error) {
	path := filepath.Join(stateDir, nginxLockFile)
	release, err = takeLock(ctx, path, sharedWait, false)
	if !errors.Is(err, syscall.EWOULDBLOCK) {
		return release, err
	}
	who, aSwitch := holder(procRoot, path)
	if aSwitch {
		who = "another switch (" + who + ")"
	} else {
		who += ", which is not an edgeswitch switch,"
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("interrupted (%v) while %s held nginx's config (%s)", context.Cause(ctx), who, path)
	}
	return nil, fmt.Errorf("%s has held nginx's config (%s) for %s; try again once it is done", who, path, sharedWait)
}

// lockDir is the state dir's directory of lock files: root's, 0711, so
// that nobody else can open a lock (an flock needs only a read
// descriptor) while anyone may stat one to find its holder in /proc/locks.
// The state dir itself stays searchable: nginx's workers follow socket
// mode's link there.
const lockDir = "locks"

const nginxLockFile = lockDir + "/nginx.lock"

// takeLock flocks path, created (0600) if missing and never through a
// symlink, waiting up to wait for another holder (0: not at all), and
// records this process's PID in it. A lock still taken then is an error
// wrapping EWOULDBLOCK. shared is the lock of one who only looks: the file
// opened read-only, not created (an error wrapping fs.ErrNotExist), a
// shared lock, no PID written.
func takeLock(ctx context.Context, path string, wait time.Duration, shared bool) (release func(), err error) {
	flags, how := os.O_RDWR|os.O_CREATE, syscall.LOCK_EX
	if shared {
		flags, how = os.O_RDONLY, syscall.LOCK_SH
	}
	f, err := os.OpenFile(path, flags|syscall.O_NOFOLLOW, 0o600)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("lock: %s %w: remove it", path, atomicfile.ErrSymlink)
	}
	if err != nil {
		return nil, fmt.Errorf("lock: %w; set state-dir to a writable directory", err)
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
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, err
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if !shared {
		if err := f.Truncate(0); err == nil {
			_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		}
	}
	return func() { f.Close() }, nil
}

func lockFile(app string) string { return lockDir + "/" + app + ".lock" }

// prepareStateDir creates the state dir when it is missing (0755) and its
// lock dir (0711), and, when edgeswitch runs as root, refuses either if
// anyone but root could change it: a lock, pending record or history
// there is written by root.
func prepareStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Usage(fmt.Errorf("state dir: %w; create it or set state-dir to a writable directory", err))
	}
	if err := stateDirTrusted(dir); err != nil {
		return err
	}
	locks := filepath.Join(dir, lockDir)
	if err := os.Mkdir(locks, 0o711); err != nil && !errors.Is(err, fs.ErrExist) {
		return Usage(fmt.Errorf("state dir: %w; set state-dir to a writable directory", err))
	}
	fi, err := os.Lstat(locks)
	if err == nil && !fi.IsDir() {
		err = fmt.Errorf("%s is not a directory: remove it", locks)
	}
	if err == nil && os.Geteuid() == 0 {
		err = trusted.Check(locks)
	}
	if err == nil && fi.Mode().Perm() != 0o711 {
		err = os.Chmod(locks, 0o711) // made under a umask of 077, or by hand
	}
	if err != nil {
		return Usage(fmt.Errorf("state dir: %w", err))
	}
	return nil
}

// stateDirTrusted is the root part of prepareStateDir, for an existing dir.
// The sticky exception is for the directories above it: in a sticky
// state dir others could still create the files root is about to.
func stateDirTrusted(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	err := trusted.Check(dir)
	if fi, serr := os.Stat(dir); err == nil && serr == nil && fi.Mode().Perm()&0o022 != 0 {
		err = fmt.Errorf("%w: %s is writable by group or others (%s), sticky or not: chmod go-w %s", trusted.ErrUntrusted, dir, fi.Mode().Perm(), dir)
	}
	if err != nil {
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
		{lockDir + "/", "Root's directory (mode 0711) of the lock files, each 0600: only root may open one, so nobody else can hold a switch back; anyone may find a lock's holder in /proc/locks."},
		{lockFile(app), "The lock a switch of APP holds while it runs, with its PID."},
		{nginxLockFile, "The lock that switches of all apps take, one at a time, to write nginx's config, test it, reload nginx and confirm."},
		{pendingFile(app), "The record of a switch of APP that has begun to change nginx and not finished (a crash, a power loss); the next switch finishes it, and status shows it."},
	}
}

// lockHolder returns the PID of the process that holds the lock on path,
// or 0. It reads the kernel's table of locks (<procRoot>/locks) rather
// than trying the lock: a look must never make a switch that is just
// starting fail on a busy lock, and only root may open a lock file.
func lockHolder(procRoot, path string) int {
	fi, err := os.Stat(path)
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
