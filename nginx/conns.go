package nginx

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Conns counts the connections open to a slot's address, as nginx lists
// it, from the kernel's socket tables under procRoot ("/proc"; tests pass a
// directory holding net/unix, net/tcp and net/tcp6). It counts the slot's
// side of each connection, so it counts whoever the client is: old nginx
// workers, and anything else that stopping the slot would cut.
//
// For "unix:/path", the stream sockets of <procRoot>/net/unix bound to
// /path other than the listener itself: the kernel gives each accepted
// socket, and each one still waiting in the listener's queue (St 02), the
// listener's path. The path is matched as the app bound it, or through
// symlinks (/var/run and /run); a relative path the app bound cannot be
// matched. When no listener has the path and nothing was counted but the
// file is a socket, the table names it in a way that cannot be matched (or
// lists another network namespace's sockets), and Conns returns an error
// rather than a 0 that would let a drain end while the slot still serves.
// The unix table does not show a peer's close: a connection nginx closed
// counts until the app closes its side too. Abstract sockets ("@name" in
// the table) never match a path.
//
// For "host:port" ("[::1]:4001" for IPv6), the entries of net/tcp and
// net/tcp6 whose local address is host:port, in state ESTABLISHED, or
// SYN_RECV (a handshake under way). An IPv4 host also matches the
// IPv4-mapped address of a dual-stack listener (Go's ":4000"), a host name
// is resolved, and an unspecified host (0.0.0.0, ::) matches any local
// address on the port. CLOSE_WAIT does not count: the client has closed
// its end (nginx never half-closes an upstream connection), so nobody
// waits for an answer on it, and counting it would hold a drain until its
// timeout for an app that is slow to close idle sockets.
//
// The kernel hands a table out a page per read and finds its place again
// at each read, so a socket opened or closed during the read can shift
// another one across a page boundary, to be missed or counted twice. A
// caller that polls until 0 should see 0 twice in a row.
func Conns(procRoot, addr string) (int, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return unixConns(procRoot, path)
	}
	return tcpConns(procRoot, addr)
}

// Listener is a socket listening on a slot's address.
type Listener struct {
	// Inode names the socket in its holders' /proc/PID/fd: "socket:[INODE]".
	Inode uint64
	Addr  string // where it listens, for messages: "[::]:4001", "/run/app/4001.sock"
}

// Listeners returns the sockets of the tables under procRoot that listen
// on addr, which is written as Conns takes it: whoever holds one of them
// may accept a connection made to addr.
//
// For "host:port", the LISTEN entries of net/tcp and net/tcp6 on the
// port whose address is the host's (its IPv4-mapped form too), or the
// unspecified one (0.0.0.0, ::), which takes connections to every
// address; for an unspecified host, every listener on the port. Several
// sockets may listen on one address (SO_REUSEPORT, another user's socket
// on 0.0.0.0 beside the slot's on 127.0.0.1), each taking some of the
// connections, so one answer proves nothing of who else may answer.
//
// For "unix:/path", every listening stream socket the table lists with
// that path. A socket whose file was removed or replaced keeps its path
// in the table, and nothing there tells which listener the file leads to
// now (the file's own inode is not the socket's), so all are returned.
func Listeners(procRoot, addr string) ([]Listener, error) {
	var ls []Listener
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		_, entries, err := unixSockets(procRoot, path)
		if err != nil {
			return nil, fmt.Errorf("find the listeners on unix:%s: %w", path, err)
		}
		for _, e := range entries {
			if e.flags&soAcceptCon != 0 {
				ls = append(ls, Listener{Inode: e.inode, Addr: e.path})
			}
		}
		return ls, nil
	}
	socks, err := tcpSockets(procRoot, addr, true)
	if err != nil {
		return nil, fmt.Errorf("find the listeners on %s: %w", addr, err)
	}
	for _, s := range socks {
		ls = append(ls, Listener{Inode: s.inode, Addr: netip.AddrPortFrom(s.ip, s.port).String()})
	}
	return ls, nil
}

const (
	soAcceptCon = 0x10000 // __SO_ACCEPTCON in the Flags column: a listener
	sockDgram   = 2       // SOCK_DGRAM in the Type column: no connections
)

// unixConns counts the connected stream sockets bound to path.
func unixConns(procRoot, path string) (int, error) {
	table, entries, err := unixSockets(procRoot, path)
	if err != nil {
		return 0, fmt.Errorf("count connections to unix:%s: %w", path, err)
	}
	n, listening := 0, false
	for _, e := range entries {
		if e.flags&soAcceptCon != 0 {
			listening = true
			continue
		}
		n++
	}
	if !listening && n == 0 {
		if fi, err := os.Stat(path); err == nil && fi.Mode()&fs.ModeSocket != 0 {
			return 0, fmt.Errorf("count connections to unix:%s: no listener in %s has that path (bound under a relative path, or in another network namespace?)", path, table)
		}
	}
	return n, nil
}

// unixSockets returns the path of <procRoot>/net/unix and its stream
// sockets bound to path.
func unixSockets(procRoot, path string) (string, []unixEntry, error) {
	table := filepath.Join(procRoot, "net", "unix")
	if path == "" {
		return table, nil, errors.New(`"unix:" without a path`)
	}
	b, err := os.ReadFile(table)
	if err != nil {
		return table, nil, err
	}
	lines := strings.Split(string(b), "\n")
	if !strings.HasPrefix(lines[0], "Num ") {
		return table, nil, fmt.Errorf("%s: unexpected header %q", table, lines[0])
	}
	match := pathMatcher(path)
	var entries []unixEntry
	for _, line := range lines[1:] {
		if e, ok := parseUnix(line); ok && e.typ != sockDgram && match(e.path) {
			entries = append(entries, e)
		}
	}
	return table, entries, nil
}

// unixEntry is one line of /proc/net/unix.
type unixEntry struct {
	flags uint64
	typ   uint64
	inode uint64
	path  string // "" when unbound; "@name" when abstract
}

// parseUnix reads one line of /proc/net/unix, which the kernel writes as
// "%pK: %08X %08X %08X %04X %02X %5lu" (Num, RefCount, Protocol, Flags,
// Type, St, Inode: the inode padded with spaces), then, for a bound socket,
// one space and the path byte for byte: it may hold spaces (even a newline,
// which this cannot tell from the next line).
func parseUnix(line string) (unixEntry, bool) {
	var fields [7]string
	rest := line
	for i := range fields {
		rest = strings.TrimLeft(rest, " ")
		end := strings.IndexByte(rest, ' ')
		if end < 0 {
			end = len(rest)
		}
		fields[i], rest = rest[:end], rest[end:]
	}
	if !strings.HasSuffix(fields[0], ":") || fields[6] == "" {
		return unixEntry{}, false
	}
	flags, err1 := strconv.ParseUint(fields[3], 16, 32)
	typ, err2 := strconv.ParseUint(fields[4], 16, 16)
	inode, err3 := strconv.ParseUint(fields[6], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return unixEntry{}, false
	}
	e := unixEntry{flags: flags, typ: typ, inode: inode}
	if rest != "" {
		e.path = rest[1:]
	}
	return e, true
}

// pathMatcher returns whether a path from the unix table names the same
// file as path: the same once cleaned, or, for an absolute path with the
// same base name, the same once symlinks are resolved.
func pathMatcher(path string) func(string) bool {
	want := filepath.Clean(path)
	// A link to a socket (socket mode's link) counts the connections of
	// the socket it points at now.
	real, err := filepath.EvalSymlinks(want)
	if err != nil {
		real = want
	}
	resolved := map[string]bool{}
	return func(p string) bool {
		if p == "" || p[0] == '@' {
			return false
		}
		p = filepath.Clean(p)
		if p == want || p == real {
			return true
		}
		if !filepath.IsAbs(p) || filepath.Base(p) != filepath.Base(real) {
			return false
		}
		if same, ok := resolved[p]; ok {
			return same
		}
		r, err := filepath.EvalSymlinks(p)
		resolved[p] = err == nil && r == real
		return resolved[p]
	}
}

// TCP states in the st column of /proc/net/tcp.
const (
	tcpEstablished = 0x01
	tcpSynRecv     = 0x03
	tcpListen      = 0x0A
)

// tcpConns counts the open connections whose local address is addr.
func tcpConns(procRoot, addr string) (int, error) {
	socks, err := tcpSockets(procRoot, addr, false)
	if err != nil {
		return 0, fmt.Errorf("count connections to %s: %w", addr, err)
	}
	return len(socks), nil
}

// tcpSocket is an entry of /proc/net/tcp or tcp6.
type tcpSocket struct {
	ip    netip.Addr // unmapped
	port  uint16
	inode uint64
}

// tcpSockets returns the entries of net/tcp and net/tcp6 under procRoot
// whose local address is addr: its open connections, or with listening
// its listeners, which include those on the unspecified address.
func tcpSockets(procRoot, addr string, listening bool) ([]tcpSocket, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("port %q", portText)
	}
	ips, err := hostAddrs(host)
	if err != nil {
		return nil, err
	}
	var socks []tcpSocket
	for _, name := range []string{"tcp", "tcp6"} {
		table := filepath.Join(procRoot, "net", name)
		f, err := os.Open(table)
		if name == "tcp6" && errors.Is(err, fs.ErrNotExist) {
			continue // no IPv6 in this kernel
		}
		if err != nil {
			return nil, err
		}
		s, err := scanTCP(table, f, ips, uint16(port), listening)
		f.Close()
		if err != nil {
			return nil, err
		}
		socks = append(socks, s...)
	}
	return socks, nil
}

// hostAddrs returns the addresses of host, unmapped: an IP, or a name's
// addresses as nginx would have resolved them.
func hostAddrs(host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip.Unmap().WithZone("")}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	for i, ip := range ips {
		ips[i] = ip.Unmap().WithZone("")
	}
	return ips, nil
}

// scanTCP returns the lines of a /proc/net/tcp or tcp6 table whose local
// address is one of ips (any, when ips is one unspecified address) on
// port, in a state that holds a connection open, or with listening in
// state LISTEN, where the unspecified address matches too.
//
// The kernel lists the listening sockets first, from their own hash
// table, and then all the others (tcp_seq_next), so a look for listeners
// stops at the first line that is not one: a busy host's table holds
// thousands of connections and TIME_WAIT sockets, which the kernel would
// otherwise write out, taking a good part of a second.
func scanTCP(table string, r io.Reader, ips []netip.Addr, port uint16, listening bool) ([]tcpSocket, error) {
	lines := bufio.NewScanner(r)
	if !lines.Scan() || !strings.Contains(lines.Text(), "local_address") {
		return nil, errors.Join(fmt.Errorf("%s: unexpected header %q", table, lines.Text()), lines.Err())
	}
	anyIP := len(ips) == 1 && ips[0].IsUnspecified()
	var socks []tcpSocket
	for lines.Scan() {
		f := strings.Fields(lines.Text())
		if len(f) < 4 {
			continue
		}
		st, err := strconv.ParseUint(f[3], 16, 8)
		if err == nil && listening && st != tcpListen {
			break
		}
		if err != nil || !listening && st != tcpEstablished && st != tcpSynRecv {
			continue
		}
		ip, p, err := parseSockAddr(f[1])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", table, err)
		}
		// :: takes IPv4 connections too (unless IPV6_V6ONLY, which the
		// table does not show); 0.0.0.0 only those.
		wildcard := listening && ip.IsUnspecified() && (ip.Is6() || slices.ContainsFunc(ips, netip.Addr.Is4))
		if p != port || !anyIP && !containsAddr(ips, ip) && !wildcard {
			continue
		}
		s := tcpSocket{ip: ip, port: p}
		if len(f) > 9 {
			s.inode, _ = strconv.ParseUint(f[9], 10, 64) // 0: no holder will be found
		}
		socks = append(socks, s)
	}
	if err := lines.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", table, err)
	}
	return socks, nil
}

func containsAddr(ips []netip.Addr, ip netip.Addr) bool {
	for _, a := range ips {
		if a == ip {
			return true
		}
	}
	return false
}

// parseSockAddr reads an address of /proc/net/tcp: "0100007F:0FA0". The
// kernel prints the IP as 32-bit words in host byte order (one for IPv4,
// four for IPv6), each as %08X, and the port as %04X.
func parseSockAddr(s string) (netip.Addr, uint16, error) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(portHex, 16, 16)
	if !ok || err != nil || len(ipHex) != 8 && len(ipHex) != 32 {
		return netip.Addr{}, 0, fmt.Errorf("address %q", s)
	}
	b := make([]byte, len(ipHex)/2)
	for i := 0; i < len(b); i += 4 {
		w, err := strconv.ParseUint(ipHex[2*i:2*i+8], 16, 32)
		if err != nil {
			return netip.Addr{}, 0, fmt.Errorf("address %q", s)
		}
		binary.NativeEndian.PutUint32(b[i:], uint32(w))
	}
	ip, _ := netip.AddrFromSlice(b)
	return ip.Unmap(), uint16(port), nil
}
