package nginx

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeRunner answers every command with out and err, and records the
// command lines it was asked to run.
type fakeRunner struct {
	out   string
	err   error
	calls []string
}

func (f *fakeRunner) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	f.calls = append(f.calls, strings.Join(append([]string{name}, args...), " "))
	return []byte(f.out), f.err
}

func TestTest(t *testing.T) {
	notFound := fmt.Errorf("exec: %q: %w", "nginx", exec.ErrNotFound)
	tests := []struct {
		name    string
		out     string
		err     error
		cancel  bool
		wantIs  error
		wantMsg string
	}{
		{
			name: "a config nginx accepts passes",
		},
		{
			name:    "a rejected config names the command and nginx's message",
			out:     "nginx: [emerg] unknown directive \"x\" in /etc/nginx/conf.d/a.conf:3\nnginx: configuration file /etc/nginx/nginx.conf test failed\n",
			err:     errors.New("exit status 1"),
			wantIs:  ErrInvalid,
			wantMsg: `invalid nginx config: nginx -t -q -c /etc/nginx/nginx.conf: [emerg] unknown directive "x" in /etc/nginx/conf.d/a.conf:3`,
		},
		{
			name:    "a build that logs to stderr in the error log format is trimmed the same way",
			out:     "2026/11/24 21:39:17 [emerg] 3225#3225: unknown directive \"x\" in /etc/nginx/conf.d/a.conf:3\nnginx: configuration file /etc/nginx/nginx.conf test failed\n",
			err:     errors.New("exit status 1"),
			wantIs:  ErrInvalid,
			wantMsg: `invalid nginx config: nginx -t -q -c /etc/nginx/nginx.conf: [emerg] unknown directive "x" in /etc/nginx/conf.d/a.conf:3`,
		},
		{
			name:    "several messages stay on one line",
			out:     "nginx: [warn] conflicting server name \"a\" on 0.0.0.0:80, ignored\nnginx: [emerg] host not found in upstream \"b\" in /etc/nginx/nginx.conf:9\n",
			err:     errors.New("exit status 1"),
			wantIs:  ErrInvalid,
			wantMsg: `invalid nginx config: nginx -t -q -c /etc/nginx/nginx.conf: [warn] conflicting server name "a" on 0.0.0.0:80, ignored; [emerg] host not found in upstream "b" in /etc/nginx/nginx.conf:9`,
		},
		{
			name:    "a failure without output reports how nginx exited",
			err:     errors.New("signal: segmentation fault"),
			wantIs:  ErrInvalid,
			wantMsg: "invalid nginx config: nginx -t -q -c /etc/nginx/nginx.conf: signal: segmentation fault",
		},
		{
			name:    "a missing binary is a setup problem, not an invalid config",
			err:     notFound,
			wantIs:  exec.ErrNotFound,
			wantMsg: `nginx -t -q -c /etc/nginx/nginx.conf: exec: "nginx": executable file not found in $PATH (install nginx or set nginx-bin to its path)`,
		},
		{
			name:    "a cancelled test is not an invalid config",
			err:     errors.New("signal: killed"),
			cancel:  true,
			wantIs:  context.Canceled,
			wantMsg: "nginx -t -q -c /etc/nginx/nginx.conf: context canceled",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			if tt.cancel {
				cancel()
			}
			t.Cleanup(cancel)
			run := &fakeRunner{out: tt.out, err: tt.err}
			err := Test(ctx, run.run, "nginx", "/etc/nginx/nginx.conf")
			if diff := cmp.Diff([]string{"nginx -t -q -c /etc/nginx/nginx.conf"}, run.calls); diff != "" {
				t.Errorf("commands run (-want +got):\n%s", diff)
			}
			checkErr(t, err, tt.wantIs, tt.wantMsg)
			if tt.wantIs != ErrInvalid && errors.Is(err, ErrInvalid) {
				t.Errorf("error %q wraps ErrInvalid", err)
			}
		})
	}
}

// checkErr fails unless err is nil when wantMsg is "", or reads wantMsg and
// wraps wantIs when that is set.
func checkErr(t *testing.T, err, wantIs error, wantMsg string) {
	t.Helper()
	if wantMsg == "" {
		if err != nil {
			t.Fatalf("got error %q, want none", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("got no error, want %q", wantMsg)
	}
	if wantIs != nil && !errors.Is(err, wantIs) {
		t.Errorf("error %q does not wrap %q", err, wantIs)
	}
	if diff := cmp.Diff(wantMsg, err.Error()); diff != "" {
		t.Errorf("error message (-want +got):\n%s", diff)
	}
}

const realNginx = "/usr/sbin/nginx"

// needNginx returns the path of the real nginx binary. Without it the test
// fails, since these tests are meant to run where nginx is installed, unless
// -short asks to skip what needs the real thing.
func needNginx(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(realNginx); err != nil {
		if testing.Short() {
			t.Skipf("no nginx binary (-short): %v", err)
		}
		t.Fatalf("no nginx binary; install nginx-light or run with -short: %v", err)
	}
	return realNginx
}

// writeNginxConf writes a config that nginx -t accepts in dir without
// touching anything outside it, plus extra inside http, and returns its path.
func writeNginxConf(t *testing.T, dir, extra string) string {
	t.Helper()
	conf := fmt.Sprintf(`pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events {}
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    %[2]s
    server {
        listen 127.0.0.1:18080;
    }
}
`, dir, extra)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTestOnRealNginx(t *testing.T) {
	bin := needNginx(t)
	tests := []struct {
		name      string
		bin       string
		extra     string
		wantIs    error
		wantParts []string
	}{
		{
			name: "a valid config passes",
			bin:  bin,
		},
		{
			name:      "an unknown directive is invalid with nginx's own message",
			bin:       bin,
			extra:     "bogus on;",
			wantIs:    ErrInvalid,
			wantParts: []string{bin + " -t -q -c ", `[emerg] unknown directive "bogus" in `, "nginx.conf:11"},
		},
		{
			name:      "a binary that does not exist says how to fix it",
			bin:       "/nonexistent/nginx",
			wantIs:    os.ErrNotExist,
			wantParts: []string{"set nginx-bin"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf := writeNginxConf(t, t.TempDir(), tt.extra)
			err := Test(t.Context(), ExecRunner, tt.bin, conf)
			if tt.wantIs == nil {
				if err != nil {
					t.Fatalf("got error %q, want none", err)
				}
				return
			}
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("error %q does not wrap %q", err, tt.wantIs)
			}
			for _, part := range tt.wantParts {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("error %q does not contain %q", err, part)
				}
			}
		})
	}
}
