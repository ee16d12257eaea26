package upstream

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/aymanbagabas/go-udiff"
)

// ErrTarget means the requested port is not one of the slots.
var ErrTarget = fmt.Errorf("target is not a slot")

// Edit is the byte-minimal change that leaves one slot listed: the bytes of
// Block.File before and after, and the spans that changed.
type Edit struct {
	File     string
	Old, New []byte
	edits    []udiff.Edit
}

// Changed reports whether the edit changes anything.
func (e *Edit) Changed() bool { return len(e.edits) > 0 }

// Diff renders the edit as a unified diff labelled with the file's path.
func (e *Edit) Diff() string {
	if !e.Changed() {
		return ""
	}
	d, err := udiff.ToUnified(e.File, e.File, string(e.Old), e.edits, udiff.DefaultContextLines)
	if err != nil {
		// The edits come from this package and are sorted and in range.
		panic(fmt.Sprintf("upstream: diff of own edit: %v", err))
	}
	return d
}

// To computes the edit that makes target the only slot of the block.
//
// The server line of target is kept as it is; if none lists it (or it is
// marked backup or down), the first other line gets the new address (only
// its port, when the host stays) and keeps its parameters, spacing and
// comment. Every other server line is removed whole, with its line break
// when it stands alone on its line. No other byte changes.
func (b *Block) To(target string, slots Slots) (*Edit, error) {
	if !slots.Has(target) {
		return nil, fmt.Errorf("%w: %s (slots are %s)", ErrTarget, target, slots)
	}
	keep := b.keep(target)
	if keep < 0 {
		return nil, fmt.Errorf("%s:%d: every server of upstream %s is marked backup or down, so none can carry the traffic alone; remove the flag from one",
			b.File, b.Line, b.Name)
	}
	var edits []udiff.Edit
	for i, s := range b.Servers {
		switch {
		case i != keep:
			start, end := lineSpan(b.Src, s.start, s.end)
			edits = append(edits, udiff.Edit{Start: start, End: end})
		case s.Slot != target:
			edits = append(edits, b.readdress(s, target))
		}
	}
	out, err := udiff.ApplyBytes(b.Src, edits)
	if err != nil {
		return nil, fmt.Errorf("upstream: apply own edit to %s: %w", b.File, err)
	}
	return &Edit{File: b.File, Old: b.Src, New: out, edits: edits}, nil
}

// keep picks the server line that stays: target's own line, unless it is
// marked backup or down (alone, nginx would refuse it or send it nothing);
// then the first line that is neither, which gets the new port. It returns
// -1 when every line is marked.
func (b *Block) keep(target string) int {
	first := -1
	for i, s := range b.Servers {
		if s.Standby {
			continue
		}
		if s.Slot == target {
			return i
		}
		if first < 0 {
			first = i
		}
	}
	return first
}

// readdress is the edit that points server s at target: only the port's
// digits when the host stays the same, else the whole address.
func (b *Block) readdress(s Server, target string) udiff.Edit {
	a := s.addr
	host, _, err := splitPort(s.Slot)
	thost, tport, terr := splitPort(target)
	if err != nil || terr != nil || host != thost {
		return udiff.Edit{Start: a.start, End: a.end, New: target}
	}
	colon := a.start + strings.LastIndexByte(string(b.Src[a.start:a.end]), ':')
	end := colon + 1
	for end < a.end && b.Src[end] >= '0' && b.Src[end] <= '9' {
		end++
	}
	return udiff.Edit{Start: colon + 1, End: end, New: strconv.Itoa(tport)}
}

// lineSpan widens the directive [start, end) to what removing it should
// remove: the whole line with its break (and trailing comment) when the
// directive stands alone on its line; otherwise the directive and the blanks
// that separate it from its neighbours on the line.
func lineSpan(src []byte, start, end int) (int, int) {
	ls := start
	for ls > 0 && isBlank(src[ls-1]) {
		ls--
	}
	le := end
	for le < len(src) && isBlank(src[le]) {
		le++
	}
	eol := le
	if eol < len(src) && src[eol] == '#' {
		eol = len(src)
		if i := bytes.IndexByte(src[le:], '\n'); i >= 0 {
			eol = le + i
		}
	}
	if eol < len(src) && src[eol] == '\r' && eol+1 < len(src) && src[eol+1] == '\n' {
		eol++
	}
	atEOL := eol == len(src) || src[eol] == '\n'
	switch {
	case (ls == 0 || src[ls-1] == '\n') && atEOL:
		return ls, min(eol+1, len(src))
	case le == len(src) || src[le] == '\n' || src[le] == '\r':
		return ls, le
	}
	return start, le
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// Weigh computes the edit that lists exactly the slots in weights, each
// with its weight= parameter: a canary gives the new slot a small share of
// the requests. A slot's line keeps its other parameters and gets its
// weight set, or added after the address; a slot with no line gets one
// after the last server line, indented alike; the lines of other slots go.
// A slot marked backup or down cannot take a share: that is an error.
func (b *Block) Weigh(weights map[string]int, slots Slots) (*Edit, error) {
	for addr, w := range weights {
		if !slots.Has(addr) || w < 1 {
			return nil, fmt.Errorf("%w: %s with weight %d (slots are %s)", ErrTarget, addr, w, slots)
		}
	}
	var edits []udiff.Edit
	seen := map[string]bool{}
	var anchor *Server // the last line that stays: new lines go after it
	for i, s := range b.Servers {
		w, ok := weights[s.Slot]
		switch {
		case !ok || seen[s.Slot]:
			start, end := lineSpan(b.Src, s.start, s.end)
			edits = append(edits, udiff.Edit{Start: start, End: end})
			continue
		case s.Standby:
			return nil, fmt.Errorf("%s:%d: server %s of upstream %s is marked backup or down, so it cannot take a share of the requests; remove the flag", b.File, s.Line, s.Addr, b.Name)
		}
		seen[s.Slot] = true
		anchor = &b.Servers[i]
		edits = append(edits, weightEdit(s, w))
	}
	for _, addr := range slots {
		if w, ok := weights[addr]; ok && !seen[addr] {
			if anchor == nil {
				return nil, fmt.Errorf("%s:%d: upstream %s lists none of %v to add a server line beside", b.File, b.Line, b.Name, slices.Collect(maps.Keys(weights)))
			}
			at, sep := b.lineAfter(*anchor)
			edits = append(edits, udiff.Edit{Start: at, End: at, New: sep + fmt.Sprintf("server %s weight=%d;", addr, w)})
		}
	}
	slices.SortStableFunc(edits, func(x, y udiff.Edit) int { return x.Start - y.Start })
	out, err := udiff.ApplyBytes(b.Src, edits)
	if err != nil {
		return nil, fmt.Errorf("upstream: apply own edit to %s: %w", b.File, err)
	}
	return &Edit{File: b.File, Old: b.Src, New: out, edits: edits}, nil
}

// weightEdit sets the weight= parameter of server s to w.
func weightEdit(s Server, w int) udiff.Edit {
	param := fmt.Sprintf("weight=%d", w)
	for _, p := range s.params {
		if strings.HasPrefix(p.text, "weight=") {
			return udiff.Edit{Start: p.start, End: p.end, New: param}
		}
	}
	return udiff.Edit{Start: s.addr.end, End: s.addr.end, New: " " + param}
}

// lineAfter is where a new server line goes after server s and what comes
// before it: at the end of s's line (after its comment), a line break and
// s's indentation, when s stands on a line of its own; else right after
// s, a space.
func (b *Block) lineAfter(s Server) (int, string) {
	ls := s.start
	for ls > 0 && isBlank(b.Src[ls-1]) {
		ls--
	}
	e := bytes.IndexByte(b.Src[s.end:], '\n')
	if (ls > 0 && b.Src[ls-1] != '\n') || e < 0 || s.end+e > b.close {
		return s.end, " "
	}
	eol, nl := s.end+e, "\n"
	if eol > 0 && b.Src[eol-1] == '\r' {
		eol, nl = eol-1, "\r\n"
	}
	return eol, nl + string(b.Src[ls:s.start])
}

// Rebody computes the edit that gives the block the body of another
// reading of it: after a canary, the new slot alone, as a plain switch
// from the block as it first was would have left it (its weight dropped,
// the live line's parameters kept).
func (b *Block) Rebody(body []byte) *Edit {
	out := b.WithBody(body)
	return &Edit{File: b.File, Old: b.Src, New: out, edits: udiff.Bytes(b.Src, out)}
}
