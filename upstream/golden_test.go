package upstream

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files from the current output")

var slots = Slots{"127.0.0.1:4000", "127.0.0.1:4001"}

// TestGolden switches every config tree in testdata/upstream to each slot
// and compares the new file and the diff with the golden files. It also
// checks, independently of the golden files, that the edit changed nothing
// outside the server lines, and that nginx itself accepts the result.
func TestGolden(t *testing.T) {
	cases, err := filepath.Glob("../testdata/upstream/*/nginx.conf")
	if err != nil || len(cases) < 12 {
		t.Fatalf("want at least 12 config trees in testdata/upstream, got %d (%v)", len(cases), err)
	}
	for _, main := range cases {
		dir := filepath.Dir(main)
		for _, to := range slots {
			_, port, _ := splitPort(to)
			name := filepath.Base(dir) + "/to-" + strconv.Itoa(port)
			t.Run(name, func(t *testing.T) {
				tree := copyTree(t, dir)
				b, err := Find(filepath.Join(tree, "nginx.conf"), "app", slots)
				if err != nil {
					t.Fatal(err)
				}
				e, err := b.To(to, slots)
				if err != nil {
					t.Fatal(err)
				}
				rel, _ := filepath.Rel(tree, e.File)
				diff := strings.ReplaceAll(e.Diff(), tree+"/", "")
				golden(t, filepath.Join(dir, "to-"+strconv.Itoa(port)+".golden.conf"), e.New)
				golden(t, filepath.Join(dir, "to-"+strconv.Itoa(port)+".golden.diff"), []byte(diff))

				if err := os.WriteFile(e.File, e.New, 0o644); err != nil {
					t.Fatal(err)
				}
				after, err := Find(filepath.Join(tree, "nginx.conf"), "app", slots)
				if err != nil {
					t.Fatalf("edited %s no longer finds the upstream: %v", rel, err)
				}
				if got := after.Listed(); len(got) != 1 || got[0] != to {
					t.Errorf("after the edit %s lists %v, want only %s", rel, got, to)
				}
				if d := cmp.Diff(string(withoutServers(b)), string(withoutServers(after))); d != "" {
					t.Errorf("%s changed outside its server lines (-before +after):\n%s", rel, d)
				}
				nginxTest(t, filepath.Join(tree, "nginx.conf"))
			})
		}
	}
}

// withoutServers returns the block's file with every line that holds one of
// its server directives cut out.
func withoutServers(b *Block) []byte {
	lines := bytes.SplitAfter(b.Src, []byte("\n"))
	drop := map[int]bool{}
	for _, s := range b.Servers {
		first := bytes.Count(b.Src[:s.start], []byte("\n"))
		last := bytes.Count(b.Src[:s.end], []byte("\n"))
		for l := first; l <= last; l++ {
			drop[l] = true
		}
	}
	var out []byte
	for i, l := range lines {
		if !drop[i] {
			out = append(out, l...)
		}
	}
	return out
}

// nginxTest runs the real nginx -t on a config tree. The e2e proof needs a
// real nginx, so a missing one fails the test unless -short is given.
func nginxTest(t *testing.T, conf string) {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx"
	}
	if _, err := os.Stat(bin); err != nil {
		if testing.Short() {
			t.Skip("nginx not installed; -short skips nginx -t")
		}
		t.Fatal("nginx not installed: run apt-get install nginx-light libnginx-mod-http-lua, or pass -short")
	}
	if out, err := exec.Command(bin, "-t", "-q", "-c", conf).CombinedOutput(); err != nil {
		t.Errorf("nginx -t -c %s: %v\n%s", conf, err, out)
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./upstream -update to create it)", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, d)
	}
}

// copyTree copies a config tree into a temp dir so tests can write to it.
func copyTree(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if strings.Contains(d.Name(), ".golden.") {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}
