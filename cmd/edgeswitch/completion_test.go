package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

// model builds kong over the real grammar, for the tests to compare the
// scripts and the page with.
func model(t *testing.T) *kong.Application {
	t.Helper()
	k, err := kong.New(&cli{}, grammar()...)
	if err != nil {
		t.Fatal(err)
	}
	return k.Model
}

// generate runs edgeswitch with args and returns its stdout and the model
// it describes.
func generate(t *testing.T, args ...string) (string, *kong.Application) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	t.Setenv("EDGESWITCH_CONFIG", "")
	code := run(t.Context(), append([]string{"-c", os.DevNull}, args...), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("edgeswitch %s: exit %d\n%s", strings.Join(args, " "), code, stderr.String())
	}
	return stdout.String(), model(t)
}

// allFlags is every visible flag of the model.
func allFlags(app *kong.Application) []*kong.Flag {
	var flags []*kong.Flag
	for _, n := range commandTree(app.Node) {
		flags = append(flags, ownFlags(n)...)
	}
	return flags
}

func writeTemp(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCompletionScriptsPassTheirShellsSyntaxCheck(t *testing.T) {
	for _, tt := range []struct{ shell, check string }{
		{"bash", "-n"},
		{"zsh", "-n"},
		{"fish", "--no-execute"},
	} {
		t.Run(tt.shell, func(t *testing.T) {
			script, _ := generate(t, "completion", tt.shell)
			bin, err := exec.LookPath(tt.shell)
			if err != nil {
				t.Skipf("%s is not installed", tt.shell)
			}
			p := writeTemp(t, "edgeswitch."+tt.shell, script)
			if out, err := exec.Command(bin, tt.check, p).CombinedOutput(); err != nil {
				t.Errorf("%s %s: %v\n%s", tt.shell, tt.check, err, out)
			}
		})
	}
}

func TestCompletionScriptsNameEveryCommandAndFlag(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		t.Run(shell, func(t *testing.T) {
			script, app := generate(t, "completion", shell)
			if cmds := commandTree(app.Node); len(cmds) < 3 {
				t.Fatalf("the model has %d commands; want at least switch, completion and man", len(cmds)-1)
			}
			for _, c := range commandTree(app.Node)[1:] {
				if !regexp.MustCompile(`(^|[^\w-])` + regexp.QuoteMeta(c.Name) + `([^\w-]|$)`).MatchString(script) {
					t.Errorf("command %s is missing", c.Name)
				}
			}
			for _, f := range allFlags(app) {
				long := `--` + f.Name
				if shell == "fish" {
					long = `-l ` + f.Name
				}
				if !regexp.MustCompile(`(^|[^\w-])` + regexp.QuoteMeta(long) + `([^\w-]|$)`).MatchString(script) {
					t.Errorf("flag %s is missing", long)
				}
				if f.Short == 'c' && !strings.Contains(script, "-c") {
					t.Errorf("short flag -c is missing")
				}
			}
		})
	}
}

// bashComplete sources the script in bash, completes words (the last one
// is the word under the cursor) and returns COMPREPLY.
func bashComplete(t *testing.T, script string, words ...string) []string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^complete -F (\S+) edgeswitch$`).FindStringSubmatch(script)
	if m == nil {
		t.Fatal("no complete -F line in the bash script")
	}
	p := writeTemp(t, "edgeswitch.bash", script)
	prog := `source "$1" && COMP_WORDS=("${@:3}") && COMP_CWORD=$((${#COMP_WORDS[@]} - 1)) && "$2" && printf '%s\n' "${COMPREPLY[@]}"`
	cmd := exec.Command("bash", append([]string{"--norc", "--noprofile", "-c", prog, "bash", p, m[1]}, words...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("completing %q: %v\n%s", words, err, stderr.String())
	}
	return strings.Fields(string(out))
}

func TestBashCompletionCompletes(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	script, _ := generate(t, "completion", "bash")
	dir := t.TempDir()
	for _, p := range []string{"nginx.conf", "edgeswitch.toml", "state/"} {
		if strings.HasSuffix(p, "/") {
			if err := os.Mkdir(filepath.Join(dir, p), 0o755); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(filepath.Join(dir, p), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The apps come from the binary being completed: edgeswitch apps.
	fake := filepath.Join(dir, "edgeswitch")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n[ \"$1\" = apps ] && printf 'api\\ntpi\\n'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		words []string
		want  []string
		not   []string
	}{
		{"the apps of the config file", []string{fake, "switch", ""}, []string{"api", "tpi"}, []string{"--dry-run"}},
		{"an app from its start", []string{fake, "status", "t"}, []string{"tpi"}, []string{"api"}},
		{"a command from its start", []string{"edgeswitch", "sw"}, []string{"switch"}, nil},
		{"every command on an empty word", []string{"edgeswitch", ""}, []string{"switch", "completion", "man"}, []string{"--upstream"}},
		{"a command flag", []string{"edgeswitch", "switch", "--dr"}, []string{"--dry-run"}, nil},
		{"a global flag after the command", []string{"edgeswitch", "switch", "--ups"}, []string{"--upstream"}, nil},
		{"global flags only before the command", []string{"edgeswitch", "--"}, []string{"--config", "--nginx-conf", "--help"}, []string{"--dry-run"}},
		{"the short config flag", []string{"edgeswitch", "-"}, []string{"-c"}, nil},
		{"a command after a flag and its value", []string{"edgeswitch", "-c", "x.toml", "--upstream", "app", "sw"}, []string{"switch"}, nil},
		{"a file after -c", []string{"edgeswitch", "-c", dir + "/ed"}, []string{dir + "/edgeswitch.toml"}, nil},
		{"a file after --nginx-conf", []string{"edgeswitch", "switch", "--nginx-conf", dir + "/ng"}, []string{dir + "/nginx.conf"}, nil},
		{"a file after --config=, split at =", []string{"edgeswitch", "--config", "=", dir + "/ed"}, []string{dir + "/edgeswitch.toml"}, nil},
		{"a file after --config= as one word", []string{"edgeswitch", "--config=" + dir + "/ed"}, []string{"--config=" + dir + "/edgeswitch.toml"}, nil},
		{"a directory after --state-dir", []string{"edgeswitch", "--state-dir", dir + "/"}, []string{dir + "/state"}, []string{dir + "/nginx.conf"}},
		{"nothing after a flag that takes a number", []string{"edgeswitch", "switch", "--to", ""}, nil, []string{"switch", "--dry-run"}},
		{"the shells of completion", []string{"edgeswitch", "completion", ""}, []string{"bash", "zsh", "fish"}, nil},
		{"flags once the shell is given", []string{"edgeswitch", "completion", "bash", ""}, []string{"--help"}, []string{"bash"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := bashComplete(t, script, tt.words...)
			for _, w := range tt.want {
				if !slices.Contains(got, w) {
					t.Errorf("%q completes to %q; want %q among them", tt.words, got, w)
				}
			}
			for _, w := range tt.not {
				if slices.Contains(got, w) {
					t.Errorf("%q completes to %q; want no %q", tt.words, got, w)
				}
			}
		})
	}
}

func TestFishCompletionCompletes(t *testing.T) {
	if _, err := exec.LookPath("fish"); err != nil {
		t.Skip("fish is not installed")
	}
	script, _ := generate(t, "completion", "fish")
	p := writeTemp(t, "edgeswitch.fish", script)
	for _, tt := range []struct{ line, want string }{
		{"edgeswitch sw", "switch"},
		{"edgeswitch -c x.toml sw", "switch"},
		{"edgeswitch switch --dr", "--dry-run"},
		{"edgeswitch switch --ups", "--upstream"},
		{"edgeswitch completion ", "bash"},
	} {
		out, err := exec.Command("fish", "--no-config", "-c", `source $argv[1]; complete -C $argv[2]`, p, tt.line).CombinedOutput()
		if err != nil {
			t.Fatalf("fish: %v\n%s", err, out)
		}
		var got []string
		for _, l := range strings.Split(string(out), "\n") {
			got = append(got, strings.SplitN(l, "\t", 2)[0])
		}
		if !slices.Contains(got, tt.want) {
			t.Errorf("%q completes to %q; want %q among them", tt.line, got, tt.want)
		}
	}
}

// docsGrammar exercises what the real grammar does not have yet: nested
// commands, aliases, enums, negatable and hidden flags, a hidden command.
type docsGrammar struct {
	Config string `short:"c" type:"path" help:"Config file."`
	Secret string `hidden:"" help:"Hidden flag."`
	Remote struct {
		Name string `help:"Remote's name, with a 'quote' and [brackets]: and \\ too."`
		Add  struct {
			Mode string `enum:"fast,slow" default:"fast" help:"How."`
			Dir  string `help:"Where."`
			URL  string `arg:"" help:"URL."`
		} `cmd:"" aliases:"new" help:"Add a remote."`
	} `cmd:"" help:"Manage remotes."`
	Sync struct {
		Check bool `negatable:"" help:"Check first."`
	} `cmd:"" help:".starts with a dot."`
	Debug struct{} `cmd:"" hidden:"" help:"Hidden command."`
}

func docsModel(t *testing.T) *kong.Application {
	t.Helper()
	k, err := kong.New(&docsGrammar{}, kong.Name("tool"), kong.Description("A tool."))
	if err != nil {
		t.Fatal(err)
	}
	return k.Model
}

func TestCompletionOfAGrammarWithNestedCommands(t *testing.T) {
	app := docsModel(t)
	for _, tt := range []struct {
		shell string
		write func(*bytes.Buffer, *kong.Application)
		check []string
	}{
		{"bash", writeBash, []string{"-n"}},
		{"zsh", writeZsh, []string{"-n"}},
		{"fish", writeFish, []string{"--no-execute"}},
	} {
		t.Run(tt.shell, func(t *testing.T) {
			var b bytes.Buffer
			tt.write(&b, app)
			script := b.String()
			for _, hidden := range []string{"secret", "debug"} {
				if strings.Contains(script, hidden) {
					t.Errorf("hidden %s is in the script", hidden)
				}
			}
			for _, want := range []string{"no-check", "fast", "slow"} {
				if !strings.Contains(script, want) {
					t.Errorf("%s is missing", want)
				}
			}
			if _, err := exec.LookPath(tt.shell); err != nil {
				t.Skipf("%s is not installed", tt.shell)
			}
			p := writeTemp(t, "tool."+tt.shell, script)
			if out, err := exec.Command(tt.shell, append(tt.check, p)...).CombinedOutput(); err != nil {
				t.Errorf("%s %s: %v\n%s", tt.shell, tt.check, err, out)
			}
		})
	}
	if _, err := exec.LookPath("bash"); err != nil {
		return
	}
	var b bytes.Buffer
	writeBash(&b, app)
	script := strings.ReplaceAll(b.String(), "complete -F _tool tool", "complete -F _tool edgeswitch")
	for _, tt := range []struct {
		words []string
		want  string
	}{
		{[]string{"tool", "remote", ""}, "add"},
		{[]string{"tool", "remote", "new", "--mode", ""}, "slow"},
		{[]string{"tool", "remote", "add", "--"}, "--name"},
		{[]string{"tool", "sync", "--no"}, "--no-check"},
	} {
		if got := bashComplete(t, script, tt.words...); !slices.Contains(got, tt.want) {
			t.Errorf("%q completes to %q; want %q among them", tt.words, got, tt.want)
		}
	}
}
