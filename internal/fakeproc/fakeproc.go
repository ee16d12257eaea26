// Package fakeproc writes /proc-like trees for tests: the kernel's socket
// tables and processes with their descriptors and cgroups, in the
// kernel's own formats (net/unix/af_unix.c unix_seq_show,
// net/ipv4/tcp_ipv4.c get_tcp4_sock, fs/proc).
package fakeproc

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The tables' header lines.
const (
	UnixHeader = "Num       RefCount Protocol Flags    Type St Inode Path\n"
	TCPHeader  = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	TCP6Header = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
)

// Flags, types and states of the tables.
const (
	Listening                                         = 0x10000 // __SO_ACCEPTCON
	Stream                                            = 1
	Dgram                                             = 2
	SSConnecting, SSConnected                         = 2, 3
	Established, SynRecv, TimeWait, CloseWait, Listen = 0x01, 0x03, 0x06, 0x08, 0x0A
)

// UnixLine is a line of /proc/net/unix; path "" for an unbound socket.
func UnixLine(flags, typ, st, inode int, path string) string {
	line := fmt.Sprintf("%016x: %08X %08X %08X %04X %02X %5d", 0, 2, 0, flags, typ, st, inode)
	if path != "" {
		line += " " + path
	}
	return line + "\n"
}

// TCPLine is a line of /proc/net/tcp or tcp6 ("[::1]:4000" for the latter).
func TCPLine(local, remote string, st, inode int) string {
	return fmt.Sprintf("%4d: %s %s %02X 00000000:00000000 00:00000000 00000000  1000        0 %d 1 0000000000000000 20 4 30 10 -1\n",
		0, Addr(local), Addr(remote), st, inode)
}

// Addr writes "ip:port" as the kernel does: the address as 32-bit words
// in host byte order, each %08X, and the port %04X.
func Addr(hostport string) string {
	ap := netip.MustParseAddrPort(hostport)
	b := ap.Addr().AsSlice()
	var s strings.Builder
	for i := 0; i < len(b); i += 4 {
		fmt.Fprintf(&s, "%08X", binary.NativeEndian.Uint32(b[i:]))
	}
	return fmt.Sprintf("%s:%04X", s.String(), ap.Port())
}

// Tables writes the socket tables (unix, tcp, tcp6) into the tree at
// root, replacing them atomically: they may be being read.
func Tables(t testing.TB, root string, tables map[string]string) {
	t.Helper()
	dir := filepath.Join(root, "net")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range tables {
		tmp := filepath.Join(dir, "."+name)
		if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// Process writes process pid into the tree at root: its stat (parent 1),
// comm, cgroup file (as given: "0::/app.slice/app@4001.service\n") and a
// descriptor of each socket inode, as the links socket:[INODE] of fd/.
func Process(t testing.TB, root string, pid int, comm, cgroup string, inodes ...int) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(pid))
	if err := os.MkdirAll(filepath.Join(dir, "fd"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"stat":   fmt.Sprintf("%d (%s) S 1 %d %d 0 -1 4194560\n", pid, comm, pid, pid),
		"comm":   comm + "\n",
		"cgroup": cgroup,
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, inode := range inodes {
		fd := filepath.Join(dir, "fd", strconv.Itoa(i+3))
		if err := os.Symlink("socket:["+strconv.Itoa(inode)+"]", fd); err != nil {
			t.Fatal(err)
		}
	}
}

// Deny makes the descriptors of process pid of the tree at root
// unreadable, as another user's are to a caller who is not root, and the
// tree itself readable by anyone (AsOtherUser reads it).
func Deny(t testing.TB, root string, pid int) {
	t.Helper()
	fd := filepath.Join(root, strconv.Itoa(pid), "fd")
	for _, dir := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(fd, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(fd, 0o755) }) // so that the temp dir can be removed
}

// AsOtherUser runs fn with the file access of user nobody, as a caller
// who is not root: for root, the filesystem UID of fn's thread changes,
// which drops its power to read what others cannot; any other caller
// already is such a user.
func AsOtherUser(t testing.TB, fn func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		fn()
		return
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	syscall.Setfsuid(65534) // it reports the previous fsuid, never an error
	defer syscall.Setfsuid(0)
	fn()
}
