package testedge

import (
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeswitch/edgeswitch/nginx"
)

// TestSocketEdge: slots on unix sockets, nginx's upstream on the link to
// the live one. Swapping the link by hand moves nginx's new connections to
// the other slot without a reload, and its cached ones close within the
// keepalive bounds: what socket mode relies on.
func TestSocketEdge(t *testing.T) {
	e := New(t, Options{Socket: true})
	ctx := t.Context()
	p0, p1 := e.Ports[0], e.Ports[1]
	sock := func(p int) string { return strings.ReplaceAll(e.SocketPattern, "{port}", strconv.Itoa(p)) }
	if want := filepath.Join(e.Dir, "run", "{port}.sock"); e.SocketPattern != want {
		t.Errorf("SocketPattern %s, want %s", e.SocketPattern, want)
	}
	if want := filepath.Join(e.StateDir, "app.sock"); e.SocketLink != want {
		t.Errorf("SocketLink %s, want %s", e.SocketLink, want)
	}
	conf, err := os.ReadFile(e.UpstreamFile)
	if err != nil {
		t.Fatal(err)
	}
	if want := "upstream app {\n    server unix:" + e.SocketLink + ";\n" + BoundKeepalive("    keepalive 16;\n") + "}\n"; !strings.HasPrefix(string(conf), want) {
		t.Errorf("%s:\n%s\nwant it to start with\n%s", e.UpstreamFile, conf, want)
	}
	if fi, err := os.Stat(sock(p0)); err != nil || fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o666 {
		t.Errorf("%s: %v %v, want a socket of mode 0666", sock(p0), fi, err)
	}
	if to, err := os.Readlink(e.SocketLink); err != nil || to != sock(p0) {
		t.Errorf("%s -> %s %v, want -> %s", e.SocketLink, to, err, sock(p0))
	}
	if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(p0)); err == nil {
		c.Close()
		t.Errorf("slot %d listens on TCP too", p0)
	}
	if got := slotOf(t, e.URL("/")); got != p0 {
		t.Fatalf("nginx answers from slot %d, want %d", got, p0)
	}

	if _, err := e.Systemctl(ctx, "start", e.SlotUnit(p1)); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, "slot "+strconv.Itoa(p1)+" listening on its socket", func() bool {
		c, err := net.Dial("unix", sock(p1))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	tmp := e.SocketLink + ".new"
	if err := os.Symlink(sock(p1), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, e.SocketLink); err != nil {
		t.Fatal(err)
	}
	// New connections go to the new slot at once; the ones nginx keeps
	// cached to the old slot close within the keepalive bounds.
	WaitFor(t, "no connection open to the old slot's socket", func() bool {
		n, err := nginx.Conns("/proc", "unix:"+sock(p0))
		return err == nil && n == 0
	})
	if got := slotOf(t, e.URL("/")); got != p1 {
		t.Errorf("after the link swap and the old slot's connections closed nginx answers from slot %d, want %d", got, p1)
	}
	if _, err := e.Systemctl(ctx, "stop", e.SlotUnit(p0)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock(p0)); !os.IsNotExist(err) {
		t.Errorf("%s after its slot stopped: %v, want it gone", sock(p0), err)
	}
}

// TestStreamsThroughNginx: an SSE and a WebSocket stream through the
// edge's nginx arrive whole and unbuffered, and so does a 2s request.
func TestStreamsThroughNginx(t *testing.T) {
	e := New(t, Options{})
	p0 := strconv.Itoa(e.Ports[0])
	var wg sync.WaitGroup
	var sse, ws StreamResult
	wg.Go(func() { sse = SSE(t.Context(), nil, e.URL("/events?seconds=1&every=50ms")) })
	wg.Go(func() { ws = WebSocket(t.Context(), nil, e.URL("/ws?seconds=1&every=50ms")) })
	start := time.Now()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(e.URL("/?sleep=2s"))
	if err != nil {
		t.Errorf("GET /?sleep=2s: %v", err)
	} else {
		resp.Body.Close()
		if took := time.Since(start); resp.StatusCode != http.StatusOK || resp.Header.Get("X-Slot") != p0 || took < 2*time.Second {
			t.Errorf("GET /?sleep=2s: %s from slot %q after %s, want 200 from %s after 2s", resp.Status, resp.Header.Get("X-Slot"), took, p0)
		}
	}
	wg.Wait()
	for what, r := range map[string]StreamResult{"SSE": sse, "WebSocket": ws} {
		t.Logf("%s: %v", what, r)
		if !r.Intact() || r.Messages != 20 || r.Slots[0] != p0 {
			t.Errorf("%s: %v; want 20 messages from slot %s, intact", what, r, p0)
		}
		if r.FirstAfter > 500*time.Millisecond {
			t.Errorf("%s: the first message came after %s: buffered on the way", what, r.FirstAfter)
		}
	}
}
