package nginx

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWorkerShutdownTimeout(t *testing.T) {
	conf := func(main string) string {
		return "# configuration file /etc/nginx/nginx.conf:\n" + main + "\nevents {}\nhttp {\n    include /etc/nginx/conf.d/*.conf;\n}\n" +
			"\n# configuration file /etc/nginx/conf.d/app.conf:\nupstream app { server 127.0.0.1:4000; }\n"
	}
	for _, tt := range []struct {
		name string
		main string
		want time.Duration
		set  bool
	}{
		{"unset", "worker_processes 2;", 0, false},
		{"seconds", "worker_shutdown_timeout 10s;", 10 * time.Second, true},
		{"a bare number is seconds", "worker_shutdown_timeout 45;", 45 * time.Second, true},
		{"several units", "worker_shutdown_timeout 1m30s;", 90 * time.Second, true},
		{"quoted, with a space", `worker_shutdown_timeout "1h 5m";`, time.Hour + 5*time.Minute, true},
		{"milliseconds", "worker_shutdown_timeout 1500ms;", 1500 * time.Millisecond, true},
		{"days and weeks", "worker_shutdown_timeout 1w2d;", 9 * 24 * time.Hour, true},
		{"0 is unset for nginx", "worker_shutdown_timeout 0;", 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			run := &fakeNginx{dump: conf(tt.main)}
			d, set, err := WorkerShutdownTimeout(t.Context(), run.run, "nginx", "/etc/nginx/nginx.conf")
			if err != nil || d != tt.want || set != tt.set {
				t.Errorf("WorkerShutdownTimeout = %s, %t, %v; want %s, %t", d, set, err, tt.want, tt.set)
			}
			if want := []string{"nginx -T -q -c /etc/nginx/nginx.conf"}; strings.Join(run.calls, "|") != want[0] {
				t.Errorf("calls %q, want %q", run.calls, want)
			}
		})
	}

	t.Run("a value that is no time is an error", func(t *testing.T) {
		run := &fakeNginx{dump: conf("worker_shutdown_timeout 10x;")}
		if _, _, err := WorkerShutdownTimeout(t.Context(), run.run, "nginx", "/etc/nginx/nginx.conf"); err == nil || !strings.Contains(err.Error(), `worker_shutdown_timeout "10x"`) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("an nginx that cannot print its config is an error with its message", func(t *testing.T) {
		run := func(ctx context.Context, name string, args ...string) ([]byte, error) {
			return []byte("nginx: [emerg] open() \"/etc/nginx/nginx.conf\" failed (13: Permission denied)\n"), errors.New("exit status 1")
		}
		_, _, err := WorkerShutdownTimeout(t.Context(), run, "nginx", "/etc/nginx/nginx.conf")
		if err == nil || !strings.Contains(err.Error(), "nginx -T -q -c /etc/nginx/nginx.conf: exit status 1: [emerg] open()") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestParseMsec(t *testing.T) {
	for _, bad := range []string{"", "s", "10x", "1m-2s", "99999999999999999999", "9999999999w"} {
		if d, err := ParseTime(bad); err == nil {
			t.Errorf("ParseTime(%q) = %s, want an error", bad, d)
		}
	}
}

func TestWorkerShutdownTimeoutOnRealNginx(t *testing.T) {
	bin := needNginx(t)
	dir := t.TempDir()
	conf := writeNginxConf(t, dir, "")
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		main string
		want time.Duration
		set  bool
	}{
		{"", 0, false},
		{"worker_shutdown_timeout 1m 5s;\n", 0, false}, // two arguments: nginx refuses it
		{"worker_shutdown_timeout '1m 5s';\n", 65 * time.Second, true},
	} {
		if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), append([]byte(tt.main), b...), 0o644); err != nil {
			t.Fatal(err)
		}
		d, set, err := WorkerShutdownTimeout(t.Context(), ExecRunner, bin, conf)
		if strings.Contains(tt.main, "1m 5s;") {
			if err == nil || !strings.Contains(err.Error(), "invalid number of arguments") {
				t.Errorf("%q: err = %v, want nginx's own refusal", tt.main, err)
			}
			continue
		}
		if err != nil || d != tt.want || set != tt.set {
			t.Errorf("%q: WorkerShutdownTimeout = %s, %t, %v; want %s, %t", tt.main, d, set, err, tt.want, tt.set)
		}
	}
}
