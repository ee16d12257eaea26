package upstream

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tufanbarisyildirim/gonginx/config"
	"github.com/tufanbarisyildirim/gonginx/parser"
)

// Errors Find returns, wrapped with the file and line they concern.
var (
	ErrParse    = errors.New("nginx config does not parse")
	ErrNotFound = errors.New("upstream not found")
	ErrTwice    = errors.New("upstream defined more than once")
	ErrNotSlot  = errors.New("not a slot")
)

// Find parses the nginx config tree rooted at mainConf, following include
// directives as nginx does (globs; relative paths against mainConf's
// directory), and returns the one upstream block called name, located in the
// bytes of its file, with every server checked to be one of slots.
func Find(mainConf, name string, slots Slots) (*Block, error) {
	p, err := parser.NewParser(mainConf,
		parser.WithIncludeParsing(),
		parser.WithSkipValidDirectivesErr(),
		parser.WithSkipComments())
	if err != nil {
		return nil, fmt.Errorf("%w: %w; set nginx-conf to your main nginx.conf", ErrParse, err)
	}
	conf, err := p.Parse()
	if err != nil {
		return nil, fmt.Errorf("%w: %s (in %s or a file it includes): %w", ErrParse, mainConf, mainConf, err)
	}
	w := walker{name: name}
	if err := w.walk(conf.FilePath, conf.Block.Directives); err != nil {
		return nil, err
	}
	switch len(w.found) {
	case 0:
		return nil, notFound(mainConf, name, w.names)
	case 1:
	default:
		var at []string
		for _, f := range w.found {
			at = append(at, fmt.Sprintf("%s:%d", f.file, f.up.Line))
		}
		return nil, fmt.Errorf("%w: upstream %s is defined at %s; keep one definition", ErrTwice, name, strings.Join(at, " and "))
	}
	f := w.found[0]
	src, err := os.ReadFile(f.file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.file, err)
	}
	return locateOne(f.file, src, name, f.up, slots)
}

// Parse locates the upstream block called name in src, the bytes of file,
// cross-checked against gonginx's reading of the same bytes. It is Find for
// one file already in memory.
func Parse(file string, src []byte, name string, slots Slots) (*Block, error) {
	conf, err := parser.NewStringParser(string(src), parser.WithSkipValidDirectivesErr(), parser.WithSkipComments()).Parse()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrParse, file, err)
	}
	w := walker{name: name}
	if err := w.walk(file, conf.Block.Directives); err != nil {
		return nil, err
	}
	if len(w.found) != 1 {
		return nil, fmt.Errorf("%w: %s holds %d upstream blocks called %s", ErrNotFound, file, len(w.found), name)
	}
	return locateOne(file, src, name, w.found[0].up, slots)
}

// locateOne finds the block with the byte scanner, checks that it saw the
// same servers as gonginx (two readings that agree are what makes a
// byte-level edit safe) and that every server is a slot.
func locateOne(file string, src []byte, name string, up *config.Upstream, slots Slots) (*Block, error) {
	blocks, err := locate(file, src, name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrParse, err)
	}
	if len(blocks) != 1 {
		return nil, fmt.Errorf("%w: %s: gonginx found upstream %s once but the byte scanner found it %d times; edit the file by hand or report this config",
			ErrParse, file, name, len(blocks))
	}
	b := blocks[0]
	var want, got []string
	for _, s := range up.UpstreamServers {
		want = append(want, unquote(s.Address))
	}
	for _, s := range b.Servers {
		got = append(got, s.Addr)
	}
	if !slices.Equal(want, got) {
		return nil, fmt.Errorf("%w: %s:%d: gonginx reads the servers of upstream %s as %q but the byte scanner reads %q; edit the file by hand or report this config",
			ErrParse, file, b.Line, name, want, got)
	}
	if err := b.checkSlots(slots); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotSlot, err)
	}
	return b, nil
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

type found struct {
	file string
	up   *config.Upstream
}

// walker collects the upstream blocks called name in a parsed tree, with the
// file each one is in, and the names of all upstreams for error messages.
type walker struct {
	name  string
	found []found
	names []string
}

func (w *walker) walk(file string, ds []config.IDirective) error {
	for _, d := range ds {
		switch d := d.(type) {
		case *config.Include:
			if len(d.Configs) == 0 && !strings.ContainsAny(d.IncludePath, "*?[") {
				return fmt.Errorf("%w: %s:%d: include %s: no such file; create it or remove the include",
					ErrParse, file, d.GetLine(), d.IncludePath)
			}
			for _, c := range d.Configs {
				if err := w.walk(c.FilePath, c.Block.Directives); err != nil {
					return err
				}
			}
			continue
		case *config.Upstream:
			w.names = append(w.names, d.UpstreamName)
			if d.UpstreamName == w.name {
				w.found = append(w.found, found{file: filepath.Clean(file), up: d})
			}
			continue
		}
		if b := d.GetBlock(); b != nil {
			if err := w.walk(file, b.GetDirectives()); err != nil {
				return err
			}
		}
	}
	return nil
}

func notFound(mainConf, name string, names []string) error {
	if len(names) == 0 {
		return fmt.Errorf("%w: no upstream block in %s or the files it includes; add \"upstream %s { server 127.0.0.1:4000; }\" inside http {}",
			ErrNotFound, mainConf, name)
	}
	return fmt.Errorf("%w: no upstream %s in %s or the files it includes (found: %s); set upstream to one of them",
		ErrNotFound, name, mainConf, strings.Join(names, ", "))
}
