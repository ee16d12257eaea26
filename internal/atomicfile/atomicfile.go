// Package atomicfile replaces files so that a reader (nginx, or the next
// run after a crash) sees either the old contents or the new, never a mix.
// It is the one way edgeswitch writes a file: nginx's config, its own
// pending record, the files init writes, and socket mode's link.
//
// Temp files are created exclusively (O_EXCL) with a random name beside
// the target, so nothing planted there in advance is written through.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Write replaces the contents of path with data. An existing file keeps
// its mode and, when allowed, its owner; a symlink at path is kept and its
// target replaced, since config trees often link sites-enabled to
// sites-available. A new file gets perm. The data is written to a temp file
// in the target's directory (".NAME.tmp*" with a random suffix, created
// exclusively; include globs such as *.conf do not match it), synced,
// renamed over the target; finally the directory is synced so the rename
// itself survives a crash.
//
// On an error before the rename, the original is untouched and the temp
// file is removed. It is not atomic across files: a change to several files
// is several replacements. After a crash between the rename and the
// directory sync the file may come back with its old contents, and an error
// from that last sync means the new contents are in place but not known to
// be durable.
func Write(path string, data []byte, perm fs.FileMode) error {
	target, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		target = path
	} else if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return write(path, target, data, perm)
}

// ErrSymlink: WriteOwn found a symlink where its file should be.
var ErrSymlink = errors.New("is a symlink, and edgeswitch never writes through a link it did not make")

// WriteOwn is Write for edgeswitch's own files, its state: a symlink at
// path is refused, never followed, so that one planted in a state dir
// cannot make root write elsewhere. (One planted after the check is
// replaced by the rename, which does not follow it.)
func WriteOwn(path string, data []byte, perm fs.FileMode) error {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("write %s: %s %w: remove it", path, path, ErrSymlink)
	}
	return write(path, path, data, perm)
}

// Link points the symlink path at target: a new link under a random temp
// name beside path, renamed over it, so that whoever resolves path (nginx,
// connecting to the live slot) finds the old target or the new one, never
// nothing. What is at path is replaced, never followed; refusing anything
// but a symlink there is the caller's business.
func Link(path, target string) error {
	dir := filepath.Dir(path)
	tmp, err := tempLink(dir, filepath.Base(path), target)
	if err != nil {
		return writeError(path, dir, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return writeError(path, dir, err)
	}
	return syncDir(path, dir)
}

// tempLink makes a symlink to target under a new random name in dir.
func tempLink(dir, name, target string) (string, error) {
	for range 100 {
		b := make([]byte, 8)
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
		tmp := filepath.Join(dir, "."+name+".tmp"+hex.EncodeToString(b))
		if err := os.Symlink(target, tmp); !errors.Is(err, fs.ErrExist) {
			return tmp, err
		}
	}
	return "", fmt.Errorf("no free temp name for a link in %s", dir)
}

// syncDir syncs dir, so that a rename in it survives a crash.
func syncDir(path, dir string) error {
	d, err := os.Open(dir)
	if err == nil {
		err = d.Sync()
		d.Close()
	}
	if err != nil {
		return fmt.Errorf("write %s: replaced, but syncing %s failed: %w", path, dir, err)
	}
	return nil
}

// write replaces target, which path names (through links or not).
func write(path, target string, data []byte, perm fs.FileMode) error {
	old, err := os.Lstat(target)
	if errors.Is(err, fs.ErrNotExist) {
		old = nil
	} else if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	dir := filepath.Dir(target)
	tmp, err := writeTemp(dir, filepath.Base(target), data, old, perm)
	if err != nil {
		return writeError(path, dir, err)
	}
	if err := os.Rename(tmp, target); err != nil {
		os.Remove(tmp)
		return writeError(path, dir, err)
	}
	return syncDir(path, dir)
}

// writeTemp writes data to a new file in dir with old's owner and mode (or
// perm when there is no old file), syncs it and returns its name. On error
// it removes the file.
func writeTemp(dir, name string, data []byte, old fs.FileInfo, perm fs.FileMode) (_ string, err error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp*")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return "", err
	}
	if old != nil {
		// Owner before mode: chown clears setuid/setgid bits. Only root
		// may give a file away; anyone else keeps their own ownership.
		if st, ok := old.Sys().(*syscall.Stat_t); ok {
			if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, fs.ErrPermission) {
				return "", err
			}
		}
		perm = old.Mode()
	}
	if err := f.Chmod(perm); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	return f.Name(), f.Close()
}

// writeError names the file and, for the failures an operator can fix,
// says how.
func writeError(path, dir string, err error) error {
	var hint string
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		hint = "free space on " + dir
	case errors.Is(err, syscall.EROFS):
		hint = dir + " is on a read-only file system; remount it read-write"
	case errors.Is(err, fs.ErrPermission):
		hint = "run as a user that may write to " + dir
	default:
		return fmt.Errorf("write %s: %w", path, err)
	}
	return fmt.Errorf("write %s: %w (%s)", path, err, hint)
}
