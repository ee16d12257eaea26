package route

import "strings"

// Addr is where a backend listens: a TCP host:port, or a unix socket's
// path. nginx writes a socket "unix:PATH" in a server line and in its
// logs; String gives that spelling, the one place the prefix is written.
type Addr struct {
	Unix bool   // a unix socket, not TCP
	Name string // host:port, or the socket's path
}

// TCP is the address host:port.
func TCP(hostPort string) Addr { return Addr{Name: hostPort} }

// Unix is the unix socket at path.
func Unix(path string) Addr { return Addr{Unix: true, Name: path} }

// ParseAddr reads an address as nginx writes it.
func ParseAddr(s string) Addr {
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		return Unix(path)
	}
	return TCP(s)
}

// String is the address as nginx writes it: "127.0.0.1:4001",
// "unix:/run/app/4001.sock".
func (a Addr) String() string {
	if a.Unix {
		return "unix:" + a.Name
	}
	return a.Name
}

// Socket returns the unix socket's path, and whether a is one.
func (a Addr) Socket() (string, bool) { return a.Name, a.Unix }

// nginxAddrs are addrs as nginx writes them.
func nginxAddrs(addrs []Addr) []string {
	var out []string
	for _, a := range addrs {
		out = append(out, a.String())
	}
	return out
}

// parseAddrs reads addresses as nginx writes them.
func parseAddrs(written []string) []Addr {
	var out []Addr
	for _, s := range written {
		out = append(out, ParseAddr(s))
	}
	return out
}
