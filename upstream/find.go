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

// Find reads the nginx config tree rooted at mainConf, following include
// directives as nginx does (globs, sorted; relative paths against mainConf's
// directory; wildcards skip hidden files), and returns the one upstream
// block called name, located in the bytes of its file, with every server
// checked to be one of slots.
func Find(mainConf, name string, slots Slots) (*Block, error) {
	w := &walker{name: name, root: filepath.Dir(mainConf), open: map[string]bool{}}
	if err := w.file(mainConf); err != nil {
		return nil, err
	}
	return w.one(mainConf, slots)
}

// Parse locates the upstream block called name in src, the bytes of file,
// without following includes. It is Find for one file already in memory.
func Parse(file string, src []byte, name string, slots Slots) (*Block, error) {
	w := &walker{name: name}
	if err := w.parse(file, src); err != nil {
		return nil, err
	}
	return w.one(file, slots)
}

// found is one gonginx reading of "upstream name", with its file's bytes.
type found struct {
	file string
	src  []byte
	up   *config.Upstream
}

// walker reads config files with gonginx, collecting the upstream blocks
// called name and the names of all upstreams for error messages. With a
// root it follows includes; without, it stays in one file.
type walker struct {
	name  string
	root  string
	open  map[string]bool // files being read, to stop include cycles
	found []found
	names []string
}

func (w *walker) file(path string) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w: %w; check the path (the nginx-conf setting, or the include that names it) and that edgeswitch may read it", ErrParse, err)
	}
	w.open[path] = true
	defer delete(w.open, path)
	return w.parse(path, src)
}

func (w *walker) parse(path string, src []byte) error {
	masked, err := mask(src)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrParse, path, err)
	}
	conf, err := parser.NewStringParser(string(masked), parser.WithSkipValidDirectivesErr(), parser.WithSkipComments()).Parse()
	if err != nil {
		return fmt.Errorf("%w: %s: %w; fix it so that nginx -t passes", ErrParse, path, err)
	}
	return w.walk(path, src, conf.Block.Directives)
}

func (w *walker) walk(path string, src []byte, ds []config.IDirective) error {
	for _, d := range ds {
		switch d := d.(type) {
		case *config.Include:
			if err := w.include(path, d); err != nil {
				return err
			}
		case *config.Upstream:
			w.names = append(w.names, d.UpstreamName)
			if d.UpstreamName == w.name {
				w.found = append(w.found, found{file: path, src: src, up: d})
			}
		default:
			if b := d.GetBlock(); b != nil {
				if err := w.walk(path, src, b.GetDirectives()); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (w *walker) include(from string, inc *config.Include) error {
	if w.root == "" {
		return nil
	}
	pattern := unquote(inc.IncludePath)
	if !filepath.IsAbs(pattern) {
		pattern = filepath.Join(w.root, pattern)
	}
	wildcard := strings.ContainsAny(pattern, "*?[")
	paths, err := filepath.Glob(pattern)
	if err != nil {
		return fmt.Errorf("%w: %s: include %s: %w", ErrParse, from, inc.IncludePath, err)
	}
	if len(paths) == 0 && !wildcard {
		return fmt.Errorf("%w: %s: include %s: no such file; create it or remove the include", ErrParse, from, pattern)
	}
	for _, p := range paths {
		if (wildcard && strings.HasPrefix(filepath.Base(p), ".")) || w.open[p] {
			continue
		}
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			continue
		}
		if err := w.file(p); err != nil {
			return err
		}
	}
	return nil
}

// one turns what the walk found into the single block, or the error that
// says why there is not exactly one.
func (w *walker) one(where string, slots Slots) (*Block, error) {
	switch len(w.found) {
	case 0:
		return nil, w.notFound(where)
	case 1:
		return locateOne(w.found[0], w.name, slots)
	}
	var at []string
	for _, f := range w.found {
		line := "?"
		if bs, err := locate(f.file, f.src, w.name); err == nil && len(bs) > 0 {
			line = fmt.Sprint(bs[0].Line)
		}
		at = append(at, f.file+":"+line)
	}
	return nil, fmt.Errorf("%w: upstream %s is defined at %s; keep one definition",
		ErrTwice, w.name, strings.Join(slices.Compact(at), " and "))
}

func (w *walker) notFound(where string) error {
	if len(w.names) == 0 {
		return fmt.Errorf("%w: no upstream block in %s or the files it includes; add \"upstream %s { server 127.0.0.1:4000; }\" inside http {}",
			ErrNotFound, where, w.name)
	}
	return fmt.Errorf("%w: no upstream %s in %s or the files it includes (found: %s); set upstream to one of them",
		ErrNotFound, w.name, where, strings.Join(w.names, ", "))
}

// locateOne finds the block with the byte scanner, checks that it saw the
// same servers as gonginx (two readings that agree are what makes a
// byte-level edit safe) and that every server is a slot.
func locateOne(f found, name string, slots Slots) (*Block, error) {
	blocks, err := locate(f.file, f.src, name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrParse, err)
	}
	if len(blocks) != 1 {
		return nil, fmt.Errorf("%w: %s: gonginx found upstream %s once but the byte scanner found it %d times; edit the file by hand or report this config",
			ErrParse, f.file, name, len(blocks))
	}
	b := blocks[0]
	var want, got []string
	for _, s := range f.up.UpstreamServers {
		want = append(want, unquote(s.Address))
	}
	for _, s := range b.Servers {
		got = append(got, s.Addr)
	}
	if !slices.Equal(want, got) {
		return nil, fmt.Errorf("%w: %s:%d: gonginx reads the servers of upstream %s as %q but the byte scanner reads %q; edit the file by hand or report this config",
			ErrParse, f.file, b.Line, name, want, got)
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
