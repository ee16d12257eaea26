package upstream

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// Slots are the server addresses edgeswitch moves traffic between, as nginx
// writes them in a server line: "127.0.0.1:4001", or "unix:/run/app.sock".
type Slots []string

// Has reports whether addr is one of the slots.
func (s Slots) Has(addr string) bool { return slices.Contains(s, addr) }

// match returns the slot that the address written in a server line names,
// or "". Ports compare as numbers, hosts as written: nginx would resolve
// "localhost", but then the upstream could send traffic elsewhere.
func (s Slots) match(written string) string {
	for _, slot := range s {
		if sameAddr(slot, written) {
			return slot
		}
	}
	return ""
}

func sameAddr(a, b string) bool {
	ha, pa, erra := splitPort(a)
	hb, pb, errb := splitPort(b)
	if erra != nil || errb != nil {
		return a == b
	}
	return ha == hb && pa == pb
}

// splitPort splits host:port with a numeric port.
func splitPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	return host, p, err
}

func (s Slots) String() string { return strings.Join(s, " or ") }

// Block is one upstream block located in the bytes of the file that holds it.
type Block struct {
	Name    string
	File    string // path of the file holding the block
	Line    int    // line of the "upstream" word
	Src     []byte // the whole file, as read
	Servers []Server
	// Directives are the block's other directives (keepalive, hash, ...):
	// some of them matter to how traffic can move.
	Directives []Directive

	open, close int // offsets of the block's '{' and '}'
}

// Server is one "server" directive of the block.
type Server struct {
	Addr       string // as written, quotes removed
	Slot       string // the slot Addr names; "" until the block is checked against Slots
	Line       int
	Standby    bool // marked backup or down: it cannot carry the traffic alone
	start, end int  // the directive, from "server" to its ';' inclusive
	addr       token
	params     []token // the words after the address
}

// Directive is one directive of a block that is not a server line.
type Directive struct {
	Name string
	Args []string // the words after the name, quotes kept
	Line int
}

// Directive returns the block's directive called name, if it has one.
func (b *Block) Directive(name string) (Directive, bool) {
	for _, d := range b.Directives {
		if d.Name == name {
			return d, true
		}
	}
	return Directive{}, false
}

// Listed returns the slots the block lists, in order, without repeats.
func (b *Block) Listed() []string {
	var slots []string
	for _, s := range b.Servers {
		if !slices.Contains(slots, s.Slot) {
			slots = append(slots, s.Slot)
		}
	}
	return slots
}

// Live returns the slot that takes the traffic: the only one listed. It is
// false when both slots are listed, the starting layout.
func (b *Block) Live() (string, bool) {
	if l := b.Listed(); len(l) == 1 {
		return l[0], true
	}
	return "", false
}

// Body returns the bytes between the block's braces. The slot edits of a
// switch change nothing outside them, so two switches of different
// upstreams in one file can each undo their own.
func (b *Block) Body() []byte { return b.Src[b.open+1 : b.close] }

// WithBody returns the block's file with its body replaced by body.
func (b *Block) WithBody(body []byte) []byte {
	out := append([]byte(nil), b.Src[:b.open+1]...)
	out = append(out, body...)
	return append(out, b.Src[b.close:]...)
}

// locate finds every "upstream name { ... }" block in src, with the byte
// range of each of its server directives.
func locate(file string, src []byte, name string) ([]*Block, error) {
	toks, err := scan(src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	var (
		blocks []*Block
		cur    *Block // the block being read, if any
		depth  int    // nesting depth before the current statement
		inner  int    // depth of cur's body
		stmt   []token
	)
	for _, t := range toks {
		if t.punct == 0 {
			stmt = append(stmt, t)
			continue
		}
		switch t.punct {
		case '{':
			depth++
			if cur == nil && isUpstream(stmt, name) {
				cur = &Block{Name: name, File: file, Line: stmt[0].line, Src: src, open: t.start}
				inner = depth
			}
		case ';':
			if cur != nil && depth == inner && len(stmt) >= 2 && stmt[0].text == "server" {
				cur.Servers = append(cur.Servers, Server{
					Addr: stmt[1].text, Line: stmt[0].line,
					start: stmt[0].start, end: t.end, addr: stmt[1], params: slices.Clone(stmt[2:]),
					Standby: slices.ContainsFunc(stmt[2:], func(w token) bool { return w.text == "backup" || w.text == "down" }),
				})
			} else if cur != nil && depth == inner && len(stmt) > 0 {
				var args []string
				for _, w := range stmt[1:] {
					args = append(args, w.text)
				}
				cur.Directives = append(cur.Directives, Directive{Name: stmt[0].text, Args: args, Line: stmt[0].line})
			}
		case '}':
			if depth == 0 {
				return nil, fmt.Errorf("%s:%d: unexpected \"}\"", file, t.line)
			}
			if cur != nil && depth == inner {
				cur.close = t.start
				blocks = append(blocks, cur)
				cur = nil
			}
			depth--
		}
		stmt = stmt[:0]
	}
	if depth != 0 || len(stmt) != 0 {
		return nil, fmt.Errorf("%s: unexpected end of file, expecting \"}\" or \";\"", file)
	}
	return blocks, nil
}

func isUpstream(stmt []token, name string) bool {
	return len(stmt) == 2 && stmt[0].text == "upstream" && stmt[1].text == name
}

// checkSlots sets each server's Port, and refuses servers that are not slots:
// edgeswitch must not drop an address it does not manage.
func (b *Block) checkSlots(s Slots) error {
	if len(b.Servers) == 0 {
		return fmt.Errorf("%s:%d: upstream %s lists no server; add \"server %s;\" to it",
			b.File, b.Line, b.Name, s[0])
	}
	for i, srv := range b.Servers {
		slot := s.match(srv.Addr)
		if slot == "" {
			return fmt.Errorf("%s:%d: upstream %s lists server %s, which is not a slot (%s); "+
				"edgeswitch only manages upstreams whose servers are its slots: move other servers to another upstream or fix the host and ports settings",
				b.File, srv.Line, b.Name, srv.Addr, s)
		}
		b.Servers[i].Slot = slot
	}
	return nil
}
