package route

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/edgeswitch/edgeswitch/internal/fakeproc"
)

// TestListenersNameTheirHolders: each socket listening on the address
// comes with the processes holding it, their programs and cgroups; one
// whose holder is gone comes with none.
func TestListenersNameTheirHolders(t *testing.T) {
	root := t.TempDir()
	fakeproc.Tables(t, root, map[string]string{
		"tcp": fakeproc.TCPHeader +
			fakeproc.TCPLine("127.0.0.1:4001", "0.0.0.0:0", fakeproc.Listen, 5001) +
			fakeproc.TCPLine("0.0.0.0:4001", "0.0.0.0:0", fakeproc.Listen, 6001) +
			fakeproc.TCPLine("127.0.0.1:4002", "0.0.0.0:0", fakeproc.Listen, 7001),
		"tcp6": fakeproc.TCP6Header,
		"unix": fakeproc.UnixHeader,
	})
	fakeproc.Process(t, root, 300, "app", "0::/app.slice/app@4001.service\n", 5001)
	got, hidden, err := Listeners(root, TCP("127.0.0.1:4001"))
	if err != nil || hidden {
		t.Fatalf("Listeners: %v, hidden %t", err, hidden)
	}
	want := []Listener{
		{Addr: "127.0.0.1:4001", Inode: 5001, Holders: []Holder{{PID: 300, Program: "app", Cgroup: "/app.slice/app@4001.service"}}},
		{Addr: "0.0.0.0:4001", Inode: 6001}, // its holder is gone
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Listeners (-want +got):\n%s", d)
	}
	if got, _, err := Listeners(root, TCP("127.0.0.1:4003")); err != nil || len(got) != 0 {
		t.Errorf("Listeners on a free port = %+v, %v; want none", got, err)
	}
}
