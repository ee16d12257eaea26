// Package trusted tells whether a file is one that only root controls.
// edgeswitch runs as root and acts on its config file, its state dir and
// the programs its hooks name: if anyone else could write one of them, or
// a directory above it, they could make root run their program or write
// where they choose. As OpenSSH's StrictModes, logrotate and cron do, such
// a path is refused, with the command that fixes it.
package trusted

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrUntrusted marks a path that someone other than root could change.
var ErrUntrusted = errors.New("not safe for root to trust")

// Check refuses path when it, or any directory above it, is not owned by
// root or is writable by group or others: both as named (whoever may
// write a directory on the way may re-point a link in it) and with its
// symlinks resolved. A directory writable by others is fine when it is
// root's and sticky (/tmp): there others cannot replace what root put in
// it.
func Check(path string) error {
	named, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(named)
	if err != nil {
		return err
	}
	for _, start := range []string{named, real} {
		for p := start; ; p = filepath.Dir(p) {
			if err := checkOne(path, p); err != nil {
				return err
			}
			if p == filepath.Dir(p) {
				break
			}
		}
	}
	return nil
}

// checkOne checks one path on the way up from what (as named by the user).
func checkOne(what, p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no owner to check", p)
	}
	via := ""
	if p != what {
		via = fmt.Sprintf(" (it holds %s)", what)
	}
	if st.Uid != 0 {
		return fmt.Errorf("%w: %s%s is owned by uid %d, not root: chown root:root %s", ErrUntrusted, p, via, st.Uid, p)
	}
	mode := fi.Mode()
	sticky := fi.IsDir() && mode&fs.ModeSticky != 0
	link := mode&fs.ModeSymlink != 0 // a link's own bits mean nothing; its directory is checked
	if mode.Perm()&0o022 != 0 && !sticky && !link {
		return fmt.Errorf("%w: %s%s is writable by group or others (%s): chmod go-w %s", ErrUntrusted, p, via, mode.Perm(), p)
	}
	return nil
}
