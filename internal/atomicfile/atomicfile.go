package nginx

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// WriteFileAtomic replaces the contents of the existing file path with data,
// so that nginx (or a crash) sees either the old file or the new one, never
// a mix. A symlink at path is kept and its target replaced, since config
// trees often link sites-enabled to sites-available. The new file is
// written to a temp file in the target's directory (".NAME.tmp*", which
// include globs such as *.conf do not match), synced, given the old mode
// and, when allowed, the old owner, then renamed over the target; finally
// the directory is synced so the rename itself survives a crash.
//
// On an error before the rename, the original is untouched and the temp
// file is removed. It is not atomic across files: a change to several files
// is several replacements. After a crash between the rename and the
// directory sync the file may come back with its old contents, and an error
// from that last sync means the new contents are in place but not known to
// be durable.
func WriteFileAtomic(path string, data []byte) error {
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	old, err := os.Stat(target)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	dir := filepath.Dir(target)
	tmp, err := writeTemp(dir, filepath.Base(target), data, old)
	if err != nil {
		return writeError(path, dir, err)
	}
	if err := os.Rename(tmp, target); err != nil {
		os.Remove(tmp)
		return writeError(path, dir, err)
	}
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

// writeTemp writes data to a new file in dir with old's owner and mode,
// syncs it and returns its name. On error it removes the file.
func writeTemp(dir, name string, data []byte, old fs.FileInfo) (_ string, err error) {
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
	// Owner before mode: chown clears setuid/setgid bits. Only root may
	// give a file away; anyone else keeps their own ownership.
	if st, ok := old.Sys().(*syscall.Stat_t); ok {
		if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, fs.ErrPermission) {
			return "", err
		}
	}
	if err := f.Chmod(old.Mode()); err != nil {
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
