package upstream

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTo(t *testing.T) {
	tests := []struct {
		name, src string
		to        string
		want      string
	}{
		{
			name: "the live slot line gets the new port and keeps its parameters and comment",
			src:  "upstream app {\n    server 127.0.0.1:4000 weight=5 max_fails=3;  # blue\n}\n",
			to:   "127.0.0.1:4001",
			want: "upstream app {\n    server 127.0.0.1:4001 weight=5 max_fails=3;  # blue\n}\n",
		},
		{
			name: "switching to the live slot changes nothing",
			src:  "upstream app { server 127.0.0.1:4000; }",
			to:   "127.0.0.1:4000",
			want: "upstream app { server 127.0.0.1:4000; }",
		},
		{
			name: "with both listed the other line goes whole with its comment and break",
			src:  "upstream app {\n\tserver 127.0.0.1:4000; # blue\n\tserver 127.0.0.1:4001; # green\n}\n",
			to:   "127.0.0.1:4001",
			want: "upstream app {\n\tserver 127.0.0.1:4001; # green\n}\n",
		},
		{
			name: "CRLF line breaks are removed whole",
			src:  "upstream app {\r\n  server 127.0.0.1:4000;\r\n  server 127.0.0.1:4001;\r\n}\r\n",
			to:   "127.0.0.1:4000",
			want: "upstream app {\r\n  server 127.0.0.1:4000;\r\n}\r\n",
		},
		{
			name: "a directive sharing its line leaves its neighbours and the line",
			src:  "upstream app { server 127.0.0.1:4000; server 127.0.0.1:4001; keepalive 8; }",
			to:   "127.0.0.1:4001",
			want: "upstream app { server 127.0.0.1:4001; keepalive 8; }",
		},
		{
			name: "the last directive on a shared line takes the blanks before it",
			src:  "upstream app {\n  keepalive 8; server 127.0.0.1:4000;\n  server 127.0.0.1:4001;\n}",
			to:   "127.0.0.1:4001",
			want: "upstream app {\n  keepalive 8;\n  server 127.0.0.1:4001;\n}",
		},
		{
			name: "a quoted address keeps its quotes",
			src:  "upstream app {\n  server \"127.0.0.1:4000\" weight=2;\n}",
			to:   "127.0.0.1:4001",
			want: "upstream app {\n  server \"127.0.0.1:4001\" weight=2;\n}",
		},
		{
			name: "a server directive spread over lines is removed with all its lines",
			src:  "upstream app {\n  server 127.0.0.1:4001;\n  server 127.0.0.1:4000\n         weight=3;\n}\n",
			to:   "127.0.0.1:4001",
			want: "upstream app {\n  server 127.0.0.1:4001;\n}\n",
		},
		{
			name: "a directive followed by the closing brace leaves the brace on its line",
			src:  "upstream app {\n  server 127.0.0.1:4000;\n  server 127.0.0.1:4001; }",
			to:   "127.0.0.1:4000",
			want: "upstream app {\n  server 127.0.0.1:4000;\n  }",
		},
		{
			name: "a target line marked backup gives way to the primary line, which takes the port",
			src:  "upstream app {\n  server 127.0.0.1:4000 max_fails=2;\n  server 127.0.0.1:4001 backup;\n}\n",
			to:   "127.0.0.1:4001",
			want: "upstream app {\n  server 127.0.0.1:4001 max_fails=2;\n}\n",
		},
		{
			name: "blocks that only look alike are left alone",
			src: "# upstream app { server 127.0.0.1:4000; }\n" +
				"log_format x '{ upstream app { server 127.0.0.1:4000; } }';\n" +
				"upstream app2 { server 127.0.0.1:4000; }\n" +
				"upstream app { server 127.0.0.1:4000; }\n",
			to: "127.0.0.1:4001",
			want: "# upstream app { server 127.0.0.1:4000; }\n" +
				"log_format x '{ upstream app { server 127.0.0.1:4000; } }';\n" +
				"upstream app2 { server 127.0.0.1:4000; }\n" +
				"upstream app { server 127.0.0.1:4001; }\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Parse("app.conf", []byte(tt.src), "app", slots)
			if err != nil {
				t.Fatal(err)
			}
			e, err := b.To(tt.to, slots)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, string(e.New)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
			if e.Changed() != (tt.src != tt.want) {
				t.Errorf("Changed() = %v for an edit that changes %v", e.Changed(), tt.src != tt.want)
			}
		})
	}
}

func TestToRefusesAPortThatIsNotASlot(t *testing.T) {
	b, err := Parse("app.conf", []byte("upstream app { server 127.0.0.1:4000; }"), "app", slots)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.To("127.0.0.1:8080", slots); !errors.Is(err, ErrTarget) {
		t.Fatalf("To(127.0.0.1:8080) = %v, want ErrTarget", err)
	}
}

func TestLive(t *testing.T) {
	tests := []struct {
		name, src string
		listed    []string
		live      string
	}{
		{"one slot listed is live", "upstream app { server 127.0.0.1:4001; }", []string{"127.0.0.1:4001"}, "127.0.0.1:4001"},
		{"both listed means none is live yet", "upstream app { server 127.0.0.1:4000; server 127.0.0.1:4001; }", []string{"127.0.0.1:4000", "127.0.0.1:4001"}, ""},
		{"a slot listed twice is one slot", "upstream app { server 127.0.0.1:4000; server 127.0.0.1:4000 backup; }", []string{"127.0.0.1:4000"}, "127.0.0.1:4000"},
		{"a port written with a leading zero is the slot", "upstream app { server 127.0.0.1:04001; }", []string{"127.0.0.1:4001"}, "127.0.0.1:4001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Parse("app.conf", []byte(tt.src), "app", slots)
			if err != nil {
				t.Fatal(err)
			}
			live, _ := b.Live()
			if d := cmp.Diff(tt.listed, b.Listed()); d != "" || live != tt.live {
				t.Errorf("Listed() diff %s, Live() = %q, want %q", d, live, tt.live)
			}
		})
	}
}

func TestDirective(t *testing.T) {
	src := "upstream app {\n    server 127.0.0.1:4001;\n    keepalive_timeout 60s;\n    location_like { keepalive 2; }\n    keepalive 16;\n}\n"
	b, err := Parse("app.conf", []byte(src), "app", slots)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := b.Directive("keepalive"); !ok || d.Line != 5 {
		t.Errorf("Directive(keepalive) = %+v, %t; want line 5 (not keepalive_timeout, not a nested block's)", d, ok)
	}
	if d, ok := b.Directive("hash"); ok {
		t.Errorf("Directive(hash) = %+v, found in a block without one", d)
	}
}

func TestFindErrors(t *testing.T) {
	tests := []struct {
		dir  string
		want error
		says []string // the message names what is wrong and where
	}{
		{"not-found", ErrNotFound, []string{"found: api, web", "set upstream"}},
		{"twice", ErrTwice, []string{" and ", "keep one"}},
		{"foreign-ip", ErrNotSlot, []string{"10.0.0.5:80", "nginx.conf:"}},
		{"foreign-unix", ErrNotSlot, []string{"unix:/run/app.sock"}},
		{"foreign-hostname", ErrNotSlot, []string{"app.internal:4000"}},
		{"no-parse", ErrParse, nil},
		{"missing-include", ErrParse, []string{"no such file"}},
		{"empty-upstream", ErrNotSlot, []string{"lists no server"}},
		{"foreign-port", ErrNotSlot, []string{"127.0.0.1:4002"}},
		{"localhost-name", ErrNotSlot, []string{"localhost:4000"}},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			_, err := Find(filepath.Join("../testdata/upstream/errors", tt.dir, "nginx.conf"), "app", slots)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Find = %v, want %v", err, tt.want)
			}
			for _, s := range tt.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

// Slots that are not host:port, such as unix sockets, are rewritten whole.
func TestToRewritesAnAddressThatIsNotAPortWhole(t *testing.T) {
	unix := Slots{"unix:/run/app/4000.sock", "unix:/run/app/4001.sock"}
	b, err := Parse("app.conf", []byte("upstream app {\n  server unix:/run/app/4000.sock max_fails=0; # live\n}\n"), "app", unix)
	if err != nil {
		t.Fatal(err)
	}
	e, err := b.To(unix[1], unix)
	if err != nil {
		t.Fatal(err)
	}
	want := "upstream app {\n  server unix:/run/app/4001.sock max_fails=0; # live\n}\n"
	if d := cmp.Diff(want, string(e.New)); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestWeigh(t *testing.T) {
	a, b := slots[0], slots[1]
	tests := []struct {
		name, src string
		weights   map[string]int
		want      string
	}{{
		name:    "a canary: the live line gets its weight, the new slot a line below, indented alike",
		src:     "upstream app {\n    server 127.0.0.1:4000 max_fails=0; # live\n    keepalive 16;\n}\n",
		weights: map[string]int{a: 90, b: 10},
		want:    "upstream app {\n    server 127.0.0.1:4000 weight=90 max_fails=0; # live\n    server 127.0.0.1:4001 weight=10;\n    keepalive 16;\n}\n",
	}, {
		name:    "weights already there are replaced",
		src:     "upstream app {\n\tserver 127.0.0.1:4000 weight=5;\n\tserver 127.0.0.1:4001;\n}\n",
		weights: map[string]int{a: 80, b: 20},
		want:    "upstream app {\n\tserver 127.0.0.1:4000 weight=80;\n\tserver 127.0.0.1:4001 weight=20;\n}\n",
	}, {
		name:    "on one line",
		src:     "upstream app { server 127.0.0.1:4000; keepalive 8; }",
		weights: map[string]int{a: 90, b: 10},
		want:    "upstream app { server 127.0.0.1:4000 weight=90; server 127.0.0.1:4001 weight=10; keepalive 8; }",
	}, {
		name:    "CRLF kept",
		src:     "upstream app {\r\n  server 127.0.0.1:4000;\r\n}\r\n",
		weights: map[string]int{a: 90, b: 10},
		want:    "upstream app {\r\n  server 127.0.0.1:4000 weight=90;\r\n  server 127.0.0.1:4001 weight=10;\r\n}\r\n",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blk, err := Parse("app.conf", []byte(tt.src), "app", slots)
			if err != nil {
				t.Fatal(err)
			}
			e, err := blk.Weigh(tt.weights, slots)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, string(e.New)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
			// nginx's own reading agrees: both listed.
			after, err := Parse("app.conf", e.New, "app", slots)
			if err != nil || len(after.Listed()) != 2 {
				t.Errorf("after the edit: %v, listed %v", err, after.Listed())
			}
		})
	}
	blk, _ := Parse("app.conf", []byte("upstream app { server 127.0.0.1:4000 backup; server 127.0.0.1:4001; }"), "app", slots)
	if _, err := blk.Weigh(map[string]int{a: 90, b: 10}, slots); err == nil || !strings.Contains(err.Error(), "backup or down") {
		t.Errorf("Weigh of a backup line = %v, want it refused", err)
	}
}
