package policy_test

import (
	"fmt"

	"github.com/agentexec/agentexec/policy"
)

func ExampleParse() {
	src := `version: 1
defaults:
  filesystem:
    read: [/usr, "${WORKSPACE}"]
    exec: [/usr]
  limits: {memory: 512MiB, timeout: 30s}
tools:
  cat: {}
  git:
    args:
      allow: ["status|diff|log|show"]
      deny: ["-c", "--upload-pack*"]
`
	p, err := policy.Parse("example.yaml", []byte(src), policy.Options{Workspace: "/src/app", CPUs: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	git, _ := p.Tool("git")
	fmt.Println(git.Profile.Name, git.Profile.Tools, git.Profile.FS.Read, git.Timeout)
	fmt.Println(git.Args.Check([]string{"log", "--oneline"}))
	fmt.Println(git.Args.Check([]string{"push", "origin"}))

	_, err = policy.Parse("example.yaml", []byte("version: 1\ntools:\n  cat: {limits: {memory: 12XB}}\n"), policy.Options{})
	fmt.Println(err)
	// Output:
	// default [cat git] [/src/app /usr] 30s
	// <nil>
	// rule tools.git.args.allow: arguments ["push" "origin"] match no allow pattern
	// example.yaml:3:26: tools.cat.limits.memory: "12XB" is not a size: unknown unit "XB" (use B, KiB, MiB, GiB, TiB, K, M, G, T, KB, MB, GB or TB)
}
