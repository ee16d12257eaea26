package main

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/alecthomas/kong"
)

// completionCmd prints a completion script generated from the kong model, so
// that it follows the commands and flags as they change. The scripts are
// static: they never run edgeswitch while completing.
type completionCmd struct {
	Shell string `arg:"" enum:"bash,zsh,fish" help:"Shell to complete in: bash, zsh or fish."`
}

func (c *completionCmd) Run(k *kong.Context) error {
	var b bytes.Buffer
	switch c.Shell {
	case "bash":
		writeBash(&b, k.Model)
	case "zsh":
		writeZsh(&b, k.Model)
	case "fish":
		writeFish(&b, k.Model)
	}
	_, err := k.Stdout.Write(b.Bytes())
	return err
}

// What the value of a flag or argument completes to.
type valueKind int

const (
	valueNone valueKind = iota
	valueFile
	valueDir
	valueEnum
	valueApp // the config file's apps, asked of edgeswitch apps when completing
)

// completeValue tells what v completes to: its enum values, files, directories or
// nothing. Paths are recognised by kong's path types, then by name
// (config, *-conf, *-file, dir, *-dir) and placeholder (FILE, DIR, PATH).
func completeValue(v *kong.Value) (valueKind, []string) {
	if v.Flag == nil && v.Name == "app" {
		return valueApp, nil
	}
	if v.Enum != "" {
		return valueEnum, v.EnumSlice()
	}
	placeholder := ""
	if v.Flag != nil {
		placeholder = v.Flag.PlaceHolder
	}
	switch {
	case v.Tag.Type == "existingdir",
		v.Name == "dir", strings.HasSuffix(v.Name, "-dir"), placeholder == "DIR":
		return valueDir, nil
	case v.Tag.Type == "path", v.Tag.Type == "existingfile", v.Tag.Type == "filecontent",
		v.Name == "config", strings.HasSuffix(v.Name, "-conf"), strings.HasSuffix(v.Name, "-file"),
		placeholder == "FILE", placeholder == "PATH":
		return valueFile, nil
	}
	return valueNone, nil
}

// takesValue reports whether f is followed by a value (--to 4001); booleans
// and counters are not.
func takesValue(f *kong.Flag) bool {
	return !f.IsBool() && !f.IsCounter()
}

// longNames are f's long names without the dashes: its name, its aliases
// and, for a negatable boolean, the negation.
func longNames(f *kong.Flag) []string {
	names := append([]string{f.Name}, f.Aliases...)
	switch neg := f.Tag.Negatable; {
	case neg == "_": // kong's mark for the default --no-<name>
		names = append(names, "no-"+f.Name)
	case neg != "":
		names = append(names, neg)
	}
	return names
}

// flagWords are all the words that name f on the command line.
func flagWords(f *kong.Flag) []string {
	var words []string
	if f.Short != 0 {
		words = append(words, "-"+string(f.Short))
	}
	for _, n := range longNames(f) {
		words = append(words, "--"+n)
	}
	return words
}

// ownFlags are the visible flags declared on n itself.
func ownFlags(n *kong.Node) []*kong.Flag {
	var out []*kong.Flag
	for _, f := range n.Flags {
		if !f.Hidden {
			out = append(out, f)
		}
	}
	return out
}

// scopeFlags are the visible flags accepted after n on the command line:
// n's own and those of its parents.
func scopeFlags(n *kong.Node) []*kong.Flag {
	var out []*kong.Flag
	for ; n != nil; n = n.Parent {
		out = append(ownFlags(n), out...)
	}
	return out
}

// subcommands are the visible commands directly under n.
func subcommands(n *kong.Node) []*kong.Node {
	var out []*kong.Node
	for _, c := range n.Children {
		if c.Type == kong.CommandNode && !c.Hidden {
			out = append(out, c)
		}
	}
	return out
}

// commandTree is n and every visible command under it, parents first.
func commandTree(n *kong.Node) []*kong.Node {
	out := []*kong.Node{n}
	for _, c := range subcommands(n) {
		out = append(out, commandTree(c)...)
	}
	return out
}

// commandPath is the words that select n after the program name, e.g.
// "switch"; "" for the application.
func commandPath(n *kong.Node) string {
	var words []string
	for ; n != nil && n.Type == kong.CommandNode; n = n.Parent {
		words = append([]string{n.Name}, words...)
	}
	return strings.Join(words, " ")
}

// flatHelp is help text as a single line, for the shells' descriptions.
func flatHelp(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// deepestFirst orders the nodes so that a command's own flag is matched
// before a parent's flag of the same name.
func deepestFirst(nodes []*kong.Node) []*kong.Node {
	out := slices.Clone(nodes)
	slices.SortStableFunc(out, func(a, b *kong.Node) int { return b.Depth() - a.Depth() })
	return out
}

// shellName turns the program name into a shell identifier.
func shellName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, s)
}

// shQuote quotes s for sh, bash and zsh.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// scopePatterns are the case patterns that match "PATH:WORD" when the
// command on the line is n or one under it, where n's flags apply. bash
// wants the stars unquoted; fish matches quoted stars, and would expand
// unquoted ones as file names.
func scopePatterns(n *kong.Node, word string, fish bool) []string {
	p := commandPath(n)
	if fish {
		if p == "" {
			return []string{fishQuote("*:" + word)}
		}
		return []string{fishQuote(p + ":" + word), fishQuote(p + " *:" + word)}
	}
	if p == "" {
		return []string{"*" + shQuote(":"+word)}
	}
	return []string{shQuote(p + ":" + word), shQuote(p+" ") + "*" + shQuote(":"+word)}
}

// writeBash writes a bash script: it walks the words before the cursor to
// find the command and how many of its arguments are given, stepping over
// the values of flags, then completes a flag's value, a flag, a command or
// an argument.
func writeBash(b *bytes.Buffer, app *kong.Application) {
	name := app.Name
	fn := "_" + shellName(name)
	nodes := commandTree(app.Node)
	bar := func(patterns []string) string { return strings.Join(patterns, " | ") }

	fmt.Fprintf(b, `# bash completion for %[1]s, generated by "%[1]s completion bash" from its
# command-line grammar. Install it with:
#   %[1]s completion bash > /etc/bash_completion.d/%[1]s

`, name)

	fmt.Fprintf(b, "# %s_value_flag CMD WORD: is WORD a flag of CMD that takes a value?\n%[1]s_value_flag() {\n\tcase \"$1:$2\" in\n", fn)
	for _, n := range deepestFirst(nodes) {
		var pats []string
		for _, f := range ownFlags(n) {
			if takesValue(f) {
				for _, w := range flagWords(f) {
					pats = append(pats, scopePatterns(n, w, false)...)
				}
			}
		}
		if len(pats) > 0 {
			fmt.Fprintf(b, "\t%s) return 0 ;;\n", bar(pats))
		}
	}
	b.WriteString("\tesac\n\treturn 1\n}\n\n")

	fmt.Fprintf(b, "# %s_flags CMD: the flags CMD accepts.\n%[1]s_flags() {\n\tcase $1 in\n", fn)
	for _, n := range nodes {
		var words []string
		for _, f := range scopeFlags(n) {
			words = append(words, flagWords(f)...)
		}
		fmt.Fprintf(b, "\t%s) echo %s ;;\n", shQuote(commandPath(n)), shQuote(strings.Join(words, " ")))
	}
	b.WriteString("\tesac\n}\n\n")

	complete := func(kind valueKind, enum []string, cur string) string {
		switch kind {
		case valueFile:
			return fn + "_files " + cur
		case valueDir:
			return fn + "_dirs " + cur
		case valueEnum:
			return fmt.Sprintf("mapfile -t COMPREPLY < <(compgen -W %s -- %s)", shQuote(strings.Join(enum, " ")), cur)
		case valueApp:
			return fmt.Sprintf(`mapfile -t COMPREPLY < <(compgen -W "$("${COMP_WORDS[0]}" apps 2>/dev/null)" -- %s)`, cur)
		}
		return ":"
	}

	fmt.Fprintf(b, "# %s_value CMD FLAG CUR: complete the value of FLAG.\n%[1]s_value() {\n\tcase \"$1:$2\" in\n", fn)
	for _, n := range deepestFirst(nodes) {
		for _, f := range ownFlags(n) {
			if kind, enum := completeValue(f.Value); takesValue(f) && kind != valueNone {
				var pats []string
				for _, w := range flagWords(f) {
					pats = append(pats, scopePatterns(n, w, false)...)
				}
				fmt.Fprintf(b, "\t%s) %s ;;\n", bar(pats), complete(kind, enum, `"$3"`))
			}
		}
	}
	b.WriteString("\tesac\n}\n\n")

	fmt.Fprintf(b, "# %s_args CMD N CUR: complete argument N (from 0) of CMD: a command or a value.\n%[1]s_args() {\n\tcase \"$1:$2\" in\n", fn)
	for _, n := range nodes {
		p := commandPath(n)
		if subs := subcommands(n); len(subs) > 0 {
			var names []string
			for _, c := range subs {
				names = append(names, c.Name)
			}
			fmt.Fprintf(b, "\t%s) %s ;;\n", shQuote(p+":0"), complete(valueEnum, names, `"$3"`))
			continue
		}
		for i, a := range n.Positional {
			kind, enum := completeValue(a)
			if kind == valueNone {
				continue
			}
			pat := shQuote(fmt.Sprintf("%s:%d", p, i))
			if a.IsCumulative() {
				pat = shQuote(p+":") + "*"
			}
			fmt.Fprintf(b, "\t%s) %s ;;\n", pat, complete(kind, enum, `"$3"`))
		}
	}
	b.WriteString("\t*) return 1 ;;\n\tesac\n}\n\n")

	fmt.Fprintf(b, `%[1]s_files() {
	compopt -o filenames 2>/dev/null
	mapfile -t COMPREPLY < <(compgen -f -- "$1")
}

%[1]s_dirs() {
	compopt -o filenames 2>/dev/null
	mapfile -t COMPREPLY < <(compgen -d -- "$1")
}

%[1]s() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	local cmd='' nargs=0 i w
	COMPREPLY=()
	for ((i = 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		case $w in
		=) ((i++)) ;; # a value after "=", split off by COMP_WORDBREAKS
		--*=* | -) ;;
		-*)
			if %[1]s_value_flag "$cmd" "$w"; then
				((i++))
				if [[ ${COMP_WORDS[i]} == = ]]; then ((i++)); fi
			fi
			;;
		*)
			case "$cmd:$w" in
`, fn)
	for _, n := range nodes[1:] {
		parent := commandPath(n.Parent)
		var pats []string
		for _, w := range append([]string{n.Name}, n.Aliases...) {
			pats = append(pats, shQuote(parent+":"+w))
		}
		fmt.Fprintf(b, "\t\t\t%s) cmd=%s nargs=0 ;;\n", bar(pats), shQuote(commandPath(n)))
	}
	fmt.Fprintf(b, `			*) nargs=$((nargs + 1)) ;;
			esac
			;;
		esac
	done

	# The value of a flag: --flag VALUE or --flag=VALUE, with or without
	# "=" in COMP_WORDBREAKS.
	local flag='' pre=''
	if [[ $cur == = ]]; then
		flag=$prev cur=''
	elif [[ $prev == = ]] && ((COMP_CWORD > 1)); then
		flag=${COMP_WORDS[COMP_CWORD-2]}
	elif [[ $cur == --*=* ]]; then
		flag=${cur%%%%=*} pre=${cur%%%%=*}= cur=${cur#*=}
	elif %[1]s_value_flag "$cmd" "$prev"; then
		flag=$prev
	fi
	if [[ -n $flag ]]; then
		%[1]s_value "$cmd" "$flag" "$cur"
		if [[ -n $pre ]]; then COMPREPLY=("${COMPREPLY[@]/#/$pre}"); fi
		return 0
	fi
	if [[ $cur != -* ]] && %[1]s_args "$cmd" "$nargs" "$cur"; then
		return 0
	fi
	mapfile -t COMPREPLY < <(compgen -W "$(%[1]s_flags "$cmd")" -- "$cur")
}

complete -F %[1]s %[2]s
`, fn, name)
}

// zshDesc escapes text for the [description] of an _arguments spec.
func zshDesc(s string) string {
	return strings.NewReplacer(`\`, `\\`, `[`, `\[`, `]`, `\]`, `:`, `\:`).Replace(flatHelp(s))
}

// zshAction is the _arguments action that completes v.
func zshAction(v *kong.Value) string {
	switch kind, enum := completeValue(v); kind {
	case valueFile:
		return "_files"
	case valueDir:
		return "_files -/"
	case valueEnum:
		return "(" + strings.Join(enum, " ") + ")"
	case valueApp:
		return `{compadd -- ${(f)"$($words[1] apps 2>/dev/null)"}}`
	}
	return " "
}

// zshFlagSpecs are the _arguments specs of f, one word each, to be joined
// by spaces on one line.
func zshFlagSpecs(f *kong.Flag) []string {
	desc := "[" + zshDesc(f.Help) + "]"
	arg := ""
	if takesValue(f) {
		msg := f.PlaceHolder
		if msg == "" {
			msg = strings.ToUpper(f.Name)
		}
		arg = ":" + strings.ReplaceAll(msg, ":", `\:`) + ":" + zshAction(f.Value)
	}
	var names, excl []string
	if f.Short != 0 {
		s := "-" + string(f.Short)
		excl = append(excl, s)
		if takesValue(f) {
			s += "+"
		}
		names = append(names, s)
	}
	for _, n := range append([]string{f.Name}, f.Aliases...) {
		s := "--" + n
		excl = append(excl, s)
		if takesValue(f) {
			s += "="
		}
		names = append(names, s)
	}
	prefix := ""
	switch {
	case f.IsCumulative() || f.IsCounter():
		prefix = "*"
	case len(names) > 1:
		prefix = "(" + strings.Join(excl, " ") + ")"
	}
	spec := shQuote(prefix + names[0] + desc + arg)
	if len(names) > 1 {
		spec = "{" + strings.Join(names, ",") + "}" + shQuote(desc+arg)
		if prefix != "" {
			spec = shQuote(prefix) + spec
		}
	}
	specs := []string{spec}
	if neg := longNames(f)[len(f.Aliases)+1:]; len(neg) > 0 {
		specs = append(specs, shQuote("--"+neg[0]+desc))
	}
	return specs
}

// writeZsh writes a zsh script: one function per command, each calling
// _arguments with the flags that apply there, then either dispatching to
// its subcommands or completing its arguments.
func writeZsh(b *bytes.Buffer, app *kong.Application) {
	name := app.Name
	fmt.Fprintf(b, `#compdef %[1]s
# zsh completion for %[1]s, generated by "%[1]s completion zsh" from its
# command-line grammar. Install it as _%[1]s in a directory of $fpath:
#   %[1]s completion zsh > /usr/local/share/zsh/site-functions/_%[1]s
`, name)
	fnOf := func(n *kong.Node) string {
		if p := commandPath(n); p != "" {
			return "_" + shellName(name+"_"+strings.ReplaceAll(p, " ", "_"))
		}
		return "_" + shellName(name)
	}
	for _, n := range commandTree(app.Node) {
		subs := subcommands(n)
		fmt.Fprintf(b, "\n%s() {\n", fnOf(n))
		if len(subs) > 0 {
			b.WriteString("\tlocal curcontext=$curcontext state state_descr line ret=1\n\ttypeset -A opt_args\n\t_arguments -C -S")
		} else {
			b.WriteString("\t_arguments -S")
		}
		for _, f := range scopeFlags(n) {
			for _, s := range zshFlagSpecs(f) {
				b.WriteString(" \\\n\t\t" + s)
			}
		}
		if len(subs) > 0 {
			b.WriteString(" \\\n\t\t'1: :->command' \\\n\t\t'*:: :->args' && ret=0\n")
			b.WriteString("\tcase $state in\n\tcommand)\n\t\tlocal -a commands=(\n")
			for _, c := range subs {
				fmt.Fprintf(b, "\t\t\t%s\n", shQuote(strings.ReplaceAll(c.Name, ":", `\:`)+":"+flatHelp(c.Help)))
			}
			fmt.Fprintf(b, "\t\t)\n\t\t_describe -t commands %s commands && ret=0\n\t\t;;\n", shQuote(strings.TrimSpace(name+" "+commandPath(n))+" command"))
			fmt.Fprintf(b, "\targs)\n\t\tcurcontext=${curcontext%%:*:*}:%s-$words[1]:\n\t\tcase $words[1] in\n", shellName(name))
			for _, c := range subs {
				words := append([]string{c.Name}, c.Aliases...)
				for i := range words {
					words[i] = shQuote(words[i])
				}
				fmt.Fprintf(b, "\t\t%s) %s && ret=0 ;;\n", strings.Join(words, " | "), fnOf(c))
			}
			b.WriteString("\t\tesac\n\t\t;;\n\tesac\n\treturn ret\n}\n")
			continue
		}
		for i, a := range n.Positional {
			pos := fmt.Sprint(i + 1)
			if a.IsCumulative() {
				pos = "*"
			} else if !a.Required {
				pos += ":"
			}
			b.WriteString(" \\\n\t\t" + shQuote(pos+":"+strings.ReplaceAll(a.Name, ":", `\:`)+":"+zshAction(a)))
		}
		b.WriteString("\n}\n")
	}
	fmt.Fprintf(b, `
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
	_%[1]s "$@"
else
	compdef _%[1]s %[2]s
fi
`, shellName(name), name)
}

// fishQuote quotes s for fish.
func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// writeFish writes a fish script: a function that walks the tokens before
// the cursor like the bash script does, and one complete line per command,
// flag and argument, conditioned on where the line is.
func writeFish(b *bytes.Buffer, app *kong.Application) {
	name := app.Name
	fn := "__" + shellName(name)
	nodes := commandTree(app.Node)
	fmt.Fprintf(b, `# fish completion for %[1]s, generated by "%[1]s completion fish" from its
# command-line grammar. Install it with:
#   %[1]s completion fish > ~/.config/fish/completions/%[1]s.fish

# %[2]s_value_flag CMD WORD: is WORD a flag of CMD that takes a value?
function %[2]s_value_flag
    switch "$argv[1]:$argv[2]"
`, name, fn)
	for _, n := range deepestFirst(nodes) {
		var pats []string
		for _, f := range ownFlags(n) {
			if takesValue(f) {
				for _, w := range flagWords(f) {
					pats = append(pats, scopePatterns(n, w, true)...)
				}
			}
		}
		if len(pats) > 0 {
			fmt.Fprintf(b, "        case %s\n            return 0\n", strings.Join(pats, " "))
		}
	}
	fmt.Fprintf(b, `    end
    return 1
end

# %[1]s_state prints how many arguments the command on the line has, then
# the words of that command.
function %[1]s_state
    set -l tokens (commandline -opc)
    set -l cmd
    set -l nargs 0
    set -l skip 0
    for w in $tokens[2..-1]
        if test $skip = 1
            set skip 0
            continue
        end
        switch $w
            case '--*=*' -
            case '-*'
                if %[1]s_value_flag "$cmd" $w
                    set skip 1
                end
            case '*'
                switch "$cmd:$w"
`, fn)
	for _, n := range nodes[1:] {
		parent := commandPath(n.Parent)
		var pats []string
		for _, w := range append([]string{n.Name}, n.Aliases...) {
			pats = append(pats, fishQuote(parent+":"+w))
		}
		fmt.Fprintf(b, "                    case %s\n                        set cmd %s\n                        set nargs 0\n",
			strings.Join(pats, " "), strings.Join(strings.Fields(commandPath(n)), " "))
	}
	fmt.Fprintf(b, `                    case '*'
                        set nargs (math $nargs + 1)
                end
        end
    end
    printf '%%s\n' $nargs $cmd
end

# %[1]s_in CMD: the line is at CMD or a command under it.
function %[1]s_in
    set -l s (%[1]s_state)
    set -l cmd "$s[2..-1]"
    test "$cmd" = "$argv[1]"; or string match -q -- "$argv[1] *" "$cmd"
end

# %[1]s_arg CMD N: the line is at argument N (from 0) of CMD.
function %[1]s_arg
    set -l s (%[1]s_state)
    test "$s[2..-1]" = "$argv[1]"; and test $s[1] = $argv[2]
end

complete -c %[2]s -f
`, fn, name)

	for _, n := range nodes {
		p := commandPath(n)
		fmt.Fprintf(b, "\n# %s\n", strings.TrimSpace(name+" "+p))
		for _, c := range subcommands(n) {
			fmt.Fprintf(b, "complete -c %s -n %s -a %s -d %s\n", name, fishQuote(fn+"_arg "+shQuote(p)+" 0"), fishQuote(c.Name), fishQuote(flatHelp(c.Help)))
		}
		if len(subcommands(n)) == 0 {
			for i, a := range n.Positional {
				kind, enum := completeValue(a)
				cond := fishQuote(fn + "_arg " + shQuote(p) + " " + fmt.Sprint(i))
				if a.IsCumulative() {
					cond = fishQuote(fmt.Sprintf("test (%s_state)[1] -ge %d; and %s_in %s", fn, i, fn, shQuote(p)))
				}
				switch kind {
				case valueFile:
					fmt.Fprintf(b, "complete -c %s -n %s -F -d %s\n", name, cond, fishQuote(flatHelp(a.Help)))
				case valueDir:
					fmt.Fprintf(b, "complete -c %s -n %s -a %s -d %s\n", name, cond, fishQuote("(__fish_complete_directories (commandline -ct))"), fishQuote(flatHelp(a.Help)))
				case valueEnum:
					fmt.Fprintf(b, "complete -c %s -n %s -a %s -d %s\n", name, cond, fishQuote(strings.Join(enum, " ")), fishQuote(flatHelp(a.Help)))
				case valueApp:
					fmt.Fprintf(b, "complete -c %s -n %s -x -a %s -d %s\n", name, cond, fishQuote("("+name+" apps 2>/dev/null)"), fishQuote(flatHelp(a.Help)))
				}
			}
		}
		for _, f := range ownFlags(n) {
			line := "complete -c " + name
			if p != "" {
				line += " -n " + fishQuote(fn+"_in "+shQuote(p))
			}
			if f.Short != 0 {
				line += " -s " + string(f.Short)
			}
			for _, l := range longNames(f) {
				line += " -l " + l
			}
			if takesValue(f) {
				switch kind, enum := completeValue(f.Value); kind {
				case valueFile:
					line += " -r -F"
				case valueDir:
					line += " -x -a " + fishQuote("(__fish_complete_directories (commandline -ct))")
				case valueEnum:
					line += " -x -a " + fishQuote(strings.Join(enum, " "))
				default:
					line += " -x"
				}
			}
			b.WriteString(line + " -d " + fishQuote(flatHelp(f.Help)) + "\n")
		}
	}
}
