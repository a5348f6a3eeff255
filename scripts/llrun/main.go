// Command llrun is a stand-in for landrun (github.com/zouuup/landrun), which
// neither Debian 12 nor the Go module proxy offers on the machines this project is
// measured on: a launcher of the same kind, on go-landlock, called with landrun's
// path flags, that restricts itself with Landlock (file system and TCP) and then
// execs the tool, with nothing else (no seccomp, no cgroup, no capability drop, no
// namespace). How closely its start-up matches landrun's is not measured here. internal/peerbench uses it
// as the Landlock-only peer of `agentexec run` and `agentexec serve`
// (docs/performance.md, "Peers"); it is not part of agentexec.
//
//	llrun [--rox PATHS] [--ro PATHS] [--rw PATHS] [--env NAME]... -- TOOL ARGS...
//
// PATHS is a comma-separated list; each flag may be given more than once. --rox
// grants read and execute, --ro read, --rw read and write (without execute); a
// directory's rule covers what is beneath it, a file's only the file. --env passes
// the named variable from llrun's environment to the tool, whose environment is
// otherwise empty. TOOL is looked up in llrun's PATH. Landlock is requested at
// ABI 5 on a best-effort basis: an older kernel gets what it supports.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

// list is a repeatable comma-separated flag.
type list []string

func main() {
	rules, env, argv, err := parse(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "llrun:", err)
		os.Exit(2)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "llrun:", err)
		os.Exit(127)
	}
	if err := landlock.V5.BestEffort().Restrict(rules...); err != nil {
		fmt.Fprintln(os.Stderr, "llrun: landlock:", err)
		os.Exit(1)
	}
	err = syscall.Exec(path, argv, env)
	fmt.Fprintln(os.Stderr, "llrun: exec:", err)
	os.Exit(126)
}

// parse reads the flags up to "--" and returns the Landlock rules, the tool's
// environment and its argv.
func parse(args []string) ([]landlock.Rule, []string, []string, error) {
	var rox, ro, rw list
	var env []string
	for len(args) > 0 && args[0] != "--" {
		if len(args) < 2 {
			return nil, nil, nil, fmt.Errorf("%s: needs a value", args[0])
		}
		v := args[1]
		switch args[0] {
		case "--rox":
			rox = append(rox, split(v)...)
		case "--ro":
			ro = append(ro, split(v)...)
		case "--rw":
			rw = append(rw, split(v)...)
		case "--env":
			if val, ok := os.LookupEnv(v); ok {
				env = append(env, v+"="+val)
			}
		default:
			return nil, nil, nil, fmt.Errorf("unknown flag %q (want --rox, --ro, --rw, --env, then -- TOOL ARGS)", args[0])
		}
		args = args[2:]
	}
	if len(args) < 2 {
		return nil, nil, nil, errors.New("no tool: want -- TOOL ARGS")
	}
	var rules []landlock.Rule
	for _, g := range []struct {
		paths list
		dir   uint64
	}{
		{rox, ll.AccessFSExecute | ll.AccessFSReadFile | ll.AccessFSReadDir},
		{ro, ll.AccessFSReadFile | ll.AccessFSReadDir},
		{rw, ll.AccessFSReadFile | ll.AccessFSReadDir | ll.AccessFSWriteFile | ll.AccessFSTruncate |
			ll.AccessFSRemoveDir | ll.AccessFSRemoveFile | ll.AccessFSMakeChar | ll.AccessFSMakeDir |
			ll.AccessFSMakeReg | ll.AccessFSMakeSock | ll.AccessFSMakeFifo | ll.AccessFSMakeBlock | ll.AccessFSMakeSym},
	} {
		for _, p := range g.paths {
			st, err := os.Stat(p)
			if err != nil {
				return nil, nil, nil, err
			}
			access := g.dir
			if !st.IsDir() {
				// A file's rule may hold only a file's rights.
				access &= ll.AccessFSExecute | ll.AccessFSReadFile | ll.AccessFSWriteFile | ll.AccessFSTruncate
			}
			rules = append(rules, landlock.PathAccess(landlock.AccessFSSet(access), p))
		}
	}
	return rules, env, args[1:], nil
}

func split(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}
