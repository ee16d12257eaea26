package route

import "testing"

func TestAddrAsNginxWritesIt(t *testing.T) {
	for _, tt := range []struct {
		written string
		want    Addr
		socket  bool
	}{
		{"127.0.0.1:4001", TCP("127.0.0.1:4001"), false},
		{"[::1]:4001", TCP("[::1]:4001"), false},
		{"unix:/run/app/4001.sock", Unix("/run/app/4001.sock"), true},
	} {
		a := ParseAddr(tt.written)
		if a != tt.want || a.String() != tt.written {
			t.Errorf("ParseAddr(%q) = %#v, written %q; want %#v", tt.written, a, a.String(), tt.want)
		}
		if path, ok := a.Socket(); ok != tt.socket || ok && path != tt.want.Name {
			t.Errorf("%q: Socket() = %q, %t", tt.written, path, ok)
		}
	}
}
