package nginx

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgeswitch/edgeswitch/internal/fakeproc"
)

func TestParseSockAddr(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the texts below are a little-endian host's")
	}
	for text, want := range map[string]string{
		"0100007F:0FA0":                         "127.0.0.1:4000",
		"00000000000000000000000001000000:0FA1": "[::1]:4001",
		"0000000000000000FFFF00000100007F:01BB": "127.0.0.1:443", // IPv4-mapped, unmapped
		"B80D0120000000000000000001000000:1F90": "[2001:db8::1]:8080",
	} {
		ip, port, err := parseSockAddr(text)
		if err != nil || netip.AddrPortFrom(ip, port).String() != want {
			t.Errorf("parseSockAddr(%s) = %s, %d, %v; want %s", text, ip, port, err, want)
		}
		if got := fakeproc.Addr(want); len(got) == len(text) && got != text {
			t.Errorf("fakeproc.Addr(%s) = %s, want %s", want, got, text)
		}
	}
	for _, bad := range []string{"", "0100007F", "0100007F:", "0100007G:0FA0", "01007F:0FA0", "0100007F:10000"} {
		if _, _, err := parseSockAddr(bad); err == nil {
			t.Errorf("parseSockAddr(%q): no error", bad)
		}
	}
}

// procDir writes fake net/ tables into a temp /proc; a nil table is not
// written.
func procDir(t *testing.T, tables map[string]string) string {
	t.Helper()
	root := t.TempDir()
	fakeproc.Tables(t, root, tables)
	return root
}

func TestConns(t *testing.T) {
	unixTable := fakeproc.UnixHeader +
		fakeproc.UnixLine(fakeproc.Listening, fakeproc.Stream, 1, 100, "/run/app/4000.sock") +
		fakeproc.UnixLine(0, fakeproc.Stream, fakeproc.SSConnected, 101, "/run/app/4000.sock") + // accepted
		fakeproc.UnixLine(0, fakeproc.Stream, fakeproc.SSConnecting, 102, "/run/app/4000.sock") + // waiting in the queue
		fakeproc.UnixLine(0, fakeproc.Stream, fakeproc.SSConnected, 103, "") + // nginx's end: unbound
		fakeproc.UnixLine(0, fakeproc.Stream, fakeproc.SSConnected, 104, "/run/app/4000.sock.old") +
		fakeproc.UnixLine(0, fakeproc.Stream, fakeproc.SSConnected, 105, "@/run/app/4000.sock") + // abstract
		fakeproc.UnixLine(0, fakeproc.Dgram, 1, 106, "/run/app/4001.sock") +
		fakeproc.UnixLine(fakeproc.Listening, fakeproc.Stream, 1, 107, "/run/app/4001.sock") +
		fakeproc.UnixLine(fakeproc.Listening, fakeproc.Stream, 1, 1234567, "/run/my app/a b.sock") +
		fakeproc.UnixLine(0, fakeproc.Stream, fakeproc.SSConnected, 1234568, "/run/my app/a b.sock") +
		fakeproc.UnixLine(0, fakeproc.Stream, fakeproc.SSConnected, 1234569, "/run/my app/a b.sock ") +
		fakeproc.UnixLine(0, 5, fakeproc.SSConnected, 5, "/run//app/./4000.sock") // seqpacket, spelled otherwise
	tcpTable := fakeproc.TCPHeader +
		fakeproc.TCPLine("127.0.0.1:4000", "0.0.0.0:0", fakeproc.Listen, 0) +
		fakeproc.TCPLine("127.0.0.1:4000", "127.0.0.1:51000", fakeproc.Established, 0) +
		fakeproc.TCPLine("127.0.0.1:4000", "127.0.0.1:51001", fakeproc.SynRecv, 0) +
		fakeproc.TCPLine("127.0.0.1:4000", "127.0.0.1:51002", fakeproc.CloseWait, 0) +
		fakeproc.TCPLine("127.0.0.1:4000", "127.0.0.1:51003", fakeproc.TimeWait, 0) +
		fakeproc.TCPLine("127.0.0.1:51004", "127.0.0.1:4000", fakeproc.Established, 0) + // the client's end
		fakeproc.TCPLine("10.0.0.5:4000", "10.0.0.9:40000", fakeproc.Established, 0) +
		fakeproc.TCPLine("127.0.0.1:4001", "127.0.0.1:51005", fakeproc.Established, 0)
	tcp6Table := fakeproc.TCP6Header +
		fakeproc.TCPLine("[::]:4000", "[::]:0", fakeproc.Listen, 0) +
		fakeproc.TCPLine("[::ffff:127.0.0.1]:4000", "[::ffff:127.0.0.1]:52000", fakeproc.Established, 0) + // a dual-stack listener's
		fakeproc.TCPLine("[::1]:4000", "[::1]:52001", fakeproc.Established, 0) +
		fakeproc.TCPLine("[::1]:4001", "[::1]:52002", fakeproc.Established, 0)
	root := procDir(t, map[string]string{"unix": unixTable, "tcp": tcpTable, "tcp6": tcp6Table})

	for _, tt := range []struct {
		name string
		addr string
		want int
	}{
		{"a unix slot counts its accepted and queued connections, not its listener or other paths", "unix:/run/app/4000.sock", 3},
		{"a unix path is matched as cleaned", "unix:/run/app//4000.sock", 3},
		{"a datagram socket and a bare listener count nothing", "unix:/run/app/4001.sock", 0},
		{"a unix path with spaces is the rest of the line", "unix:/run/my app/a b.sock", 1},
		{"a unix path nobody binds has none", "unix:/run/app/4002.sock", 0},
		{"an abstract socket never matches a path", "unix:@/run/app/4000.sock", 0},
		{"an IPv4 slot counts fakeproc.Established and half-open connections of both tables", "127.0.0.1:4000", 3},
		{"another port is another slot", "127.0.0.1:4001", 1},
		{"an IPv6 slot", "[::1]:4000", 1},
		{"an unspecified host counts every local address on the port", "0.0.0.0:4000", 5},
		{"a port nothing listens on", "127.0.0.1:4002", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Conns(root, tt.addr)
			if err != nil || got != tt.want {
				t.Errorf("Conns(%s) = %d, %v; want %d", tt.addr, got, err, tt.want)
			}
		})
	}

	t.Run("a missing tcp6 table is a kernel without IPv6", func(t *testing.T) {
		root := procDir(t, map[string]string{"tcp": tcpTable})
		if got, err := Conns(root, "127.0.0.1:4000"); err != nil || got != 2 {
			t.Errorf("Conns = %d, %v; want 2", got, err)
		}
	})

	for _, tt := range []struct {
		name   string
		tables map[string]string
		addr   string
		msg    string
	}{
		{"no unix table", map[string]string{}, "unix:/run/app.sock", "no such file"},
		{"no tcp table", map[string]string{"tcp6": tcp6Table}, "127.0.0.1:4000", "no such file"},
		{"a unix table in another format", map[string]string{"unix": "Path\n/run/app.sock\n"}, "unix:/run/app.sock", "unexpected header"},
		{"a tcp table in another format", map[string]string{"tcp": "sl local\n"}, "127.0.0.1:4000", "unexpected header"},
		{"a tcp line that does not read", map[string]string{"tcp": fakeproc.TCPHeader + "   0: 0100007F 00000000:0000 01 0\n"}, "127.0.0.1:4000", `address "0100007F"`},
		{"unix: without a path", map[string]string{"unix": fakeproc.UnixHeader}, "unix:", "without a path"},
		{"an address without a port", map[string]string{"tcp": fakeproc.TCPHeader}, "127.0.0.1", "missing port"},
		{"a port that is no port", map[string]string{"tcp": fakeproc.TCPHeader}, "127.0.0.1:http", `port "http"`},
	} {
		t.Run(tt.name+" is an error", func(t *testing.T) {
			root := procDir(t, tt.tables)
			n, err := Conns(root, tt.addr)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Conns(%s) = %d, %v; want an error with %q", tt.addr, n, err, tt.msg)
			}
		})
	}

	t.Run("a socket file no listener in the table has is an error, not 0", func(t *testing.T) {
		path := shortSocketPath(t, "app.sock")
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		root := procDir(t, map[string]string{"unix": fakeproc.UnixHeader + fakeproc.UnixLine(fakeproc.Listening, fakeproc.Stream, 1, 100, "app.sock")})
		n, err := Conns(root, "unix:"+path)
		if err == nil || !strings.Contains(err.Error(), "no listener in "+filepath.Join(root, "net", "unix")+" has that path") {
			t.Errorf("Conns = %d, %v; want an error that no listener has the path", n, err)
		}
	})
}

// shortSocketPath returns a path for a socket named name in a new
// directory whose name has a space, short enough for sun_path (108 bytes).
func shortSocketPath(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "es ")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, name)
	if len(path) >= 100 {
		t.Skipf("temp dir %s too long for a socket path", dir)
	}
	return path
}

// TestConnsOnTheKernel checks the reading of the tables against the real
// ones: n clients connect, some accepted and some still queued, and Conns
// sees exactly n. It needs no root and no nginx.
func TestConnsOnTheKernel(t *testing.T) {
	if _, err := os.Stat("/proc/net/unix"); err != nil {
		t.Skipf("no socket tables: %v", err)
	}
	const n, accepted = 5, 2

	// dial connects n clients to ln's address and accepts some of them. It
	// returns the clients and the accepted connections.
	dial := func(t *testing.T, ln net.Listener, network, addr string) (clients, servers []net.Conn) {
		t.Helper()
		for range n {
			c, err := net.Dial(network, addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			clients = append(clients, c)
		}
		for range accepted {
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			servers = append(servers, c)
		}
		return clients, servers
	}
	// want polls until Conns sees want (a handshake or a close may still be
	// on its way through the loopback), and fails with what it saw last.
	want := func(t *testing.T, addr string, want int) {
		t.Helper()
		var got int
		var err error
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if got, err = Conns("/proc", addr); err == nil && got == want {
				return
			}
		}
		t.Errorf("Conns(%s) = %d, %v; want %d", addr, got, err, want)
	}

	t.Run("unix", func(t *testing.T) {
		path := shortSocketPath(t, "app 1.sock") // spaces in the directory and the name
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		// An abstract socket with the same name, which must not count.
		abs, err := net.Listen("unix", "@"+path)
		if err != nil {
			t.Fatal(err)
		}
		defer abs.Close()
		if c, err := net.Dial("unix", "@"+path); err == nil {
			defer c.Close()
		}
		want(t, "unix:"+path, 0)
		clients, _ := dial(t, ln, "unix", path)
		want(t, "unix:"+path, n)

		// The same file through a symlinked directory, as /var/run is /run.
		link := filepath.Join(t.TempDir(), "run")
		if err := os.Symlink(filepath.Dir(path), link); err != nil {
			t.Fatal(err)
		}
		want(t, "unix:"+filepath.Join(link, filepath.Base(path)), n)
		// A link to the socket (socket mode's): the socket's connections.
		sockLink := filepath.Join(t.TempDir(), "app.sock")
		if err := os.Symlink(path, sockLink); err != nil {
			t.Fatal(err)
		}
		want(t, "unix:"+sockLink, n)

		// The table shows no peer's close: an accepted connection the
		// client closed counts until the app closes it.
		clients[0].Close()
		want(t, "unix:"+path, n)
	})

	t.Run("tcp", func(t *testing.T) {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addr := ln.Addr().String()
		want(t, addr, 0)
		clients, _ := dial(t, ln, "tcp", addr)
		want(t, addr, n)
		_, port, _ := net.SplitHostPort(addr)
		want(t, net.JoinHostPort("localhost", port), n)

		// A client that closed leaves its server end in CLOSE_WAIT, accepted
		// (clients[0]) or not (the last one): no longer counted.
		clients[0].Close()
		clients[n-1].Close()
		want(t, addr, n-2)
	})

	t.Run("a dual-stack listener holds IPv4 clients in tcp6", func(t *testing.T) {
		ln, err := net.Listen("tcp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		if ap := netip.MustParseAddrPort(ln.Addr().String()); !ap.Addr().Is6() {
			t.Skipf("listener %s is not dual-stack", ap)
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		addr := net.JoinHostPort("127.0.0.1", port)
		dial(t, ln, "tcp4", addr)
		want(t, addr, n)
	})

	t.Run("ipv6", func(t *testing.T) {
		ln, err := net.Listen("tcp6", "[::1]:0")
		if err != nil {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		defer ln.Close()
		dial(t, ln, "tcp6", ln.Addr().String())
		want(t, ln.Addr().String(), n)
	})
}

func TestListeners(t *testing.T) {
	root := procDir(t, map[string]string{
		// The listeners first, as the kernel writes the table.
		"tcp": fakeproc.TCPHeader +
			fakeproc.TCPLine("127.0.0.1:4001", "0.0.0.0:0", fakeproc.Listen, 11) +
			fakeproc.TCPLine("0.0.0.0:4001", "0.0.0.0:0", fakeproc.Listen, 12) + // a squatter on every address
			fakeproc.TCPLine("10.0.0.5:4001", "0.0.0.0:0", fakeproc.Listen, 13) + // another address
			fakeproc.TCPLine("127.0.0.1:4000", "0.0.0.0:0", fakeproc.Listen, 15) +
			fakeproc.TCPLine("127.0.0.1:4001", "127.0.0.1:51000", fakeproc.Established, 14) +
			fakeproc.TCPLine("127.0.0.1:4001", "0.0.0.0:0", fakeproc.Listen, 16), // not read: the listeners are over
		"tcp6": fakeproc.TCP6Header +
			fakeproc.TCPLine("[::]:4001", "[::]:0", fakeproc.Listen, 21) +
			fakeproc.TCPLine("[::ffff:127.0.0.1]:4001", "[::]:0", fakeproc.Listen, 22) +
			fakeproc.TCPLine("[::1]:4001", "[::]:0", fakeproc.Listen, 23),
		"unix": fakeproc.UnixHeader +
			fakeproc.UnixLine(fakeproc.Listening, fakeproc.Stream, 1, 31, "/run/app/4001.sock") +
			fakeproc.UnixLine(fakeproc.Listening, fakeproc.Stream, 1, 32, "/run/app/4001.sock") + // a stale one, its file replaced
			fakeproc.UnixLine(0, fakeproc.Stream, fakeproc.SSConnected, 33, "/run/app/4001.sock") +
			fakeproc.UnixLine(fakeproc.Listening, fakeproc.Stream, 1, 34, "/run/app/4000.sock"),
	})
	for _, tt := range []struct {
		name string
		addr string
		want []Listener
	}{
		{"an IPv4 slot: its own, the wildcards and the v4-mapped, in tcp and tcp6", "127.0.0.1:4001", []Listener{
			{11, "127.0.0.1:4001"}, {12, "0.0.0.0:4001"}, {21, "[::]:4001"}, {22, "127.0.0.1:4001"},
		}},
		{"an IPv6 slot: not the IPv4 wildcard", "[::1]:4001", []Listener{{21, "[::]:4001"}, {23, "[::1]:4001"}}},
		{"an unspecified host: every listener on the port", "0.0.0.0:4000", []Listener{{15, "127.0.0.1:4000"}}},
		{"a port nothing listens on", "127.0.0.1:4002", nil},
		{"a unix path: every listener with it, stale ones too", "unix:/run/app/4001.sock", []Listener{{31, "/run/app/4001.sock"}, {32, "/run/app/4001.sock"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Listeners(root, tt.addr)
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("Listeners(%s) = %v, %v; want %v", tt.addr, got, err, tt.want)
			}
		})
	}
	if _, err := Listeners(procDir(t, nil), "127.0.0.1:4001"); err == nil || !strings.Contains(err.Error(), "find the listeners on 127.0.0.1:4001") {
		t.Errorf("Listeners without a table: %v; want an error", err)
	}
}
