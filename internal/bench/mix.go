package bench

// Call is one entry of the tool mix: a policy tool and its arguments, run in the
// workspace.
type Call struct {
	// Name labels the call in reports ("git status").
	Name string
	// Tool is the policy tool's name.
	Tool string
	// Args are the arguments after argv[0].
	Args []string
	// NeedsGit marks calls that need the workspace's git repository.
	NeedsGit bool
}

// Mix returns the agent-like tool mix: searches, reads, listings, git queries, a
// small python3 and shell pipelines, with workspace-relative paths.
func Mix() []Call {
	f := FilePath(3, 4, 5)
	return []Call{
		{Name: "true", Tool: "true"},
		{Name: "rg", Tool: "rg", Args: []string{"-n", "TODO", "."}},
		{Name: "grep -rn", Tool: "grep", Args: []string{"-rn", "--include=*.py", "TODO", "pkg02"}},
		{Name: "sed -n", Tool: "sed", Args: []string{"-n", "10,40p", f}},
		{Name: "awk", Tool: "awk", Args: []string{"/def /{n++} END{print n}", f}},
		{Name: "cat", Tool: "cat", Args: []string{f}},
		{Name: "head", Tool: "head", Args: []string{"-n", "20", f}},
		{Name: "tail", Tool: "tail", Args: []string{"-n", "20", f}},
		{Name: "find", Tool: "find", Args: []string{".", "-name", "mod1*.py", "-path", "*/sub0*"}},
		{Name: "stat", Tool: "stat", Args: []string{"-c", "%n %s %a", f}},
		{Name: "ls", Tool: "ls", Args: []string{"-la", "pkg03/sub04"}},
		{Name: "git status", Tool: "git", Args: []string{"status", "--porcelain"}, NeedsGit: true},
		{Name: "git diff --stat", Tool: "git", Args: []string{"diff", "--stat"}, NeedsGit: true},
		{Name: "python3 -c", Tool: "python3", Args: []string{"-c", "import sys; print(sum(range(1000)), sys.version_info[0])"}},
		{Name: "sh -c pipe", Tool: "sh", Args: []string{"-c", "grep -c def " + f + " | tr -d ' '"}},
		{Name: "bash -c", Tool: "bash", Args: []string{"-c", "for f in pkg03/sub04/mod0*.py; do echo \"${f##*/}\"; done | head -n 5"}},
	}
}

// StartupTools are the 20 tools of the start-up and idle-memory policy: the mix's
// tools and a few more coreutils, all hot.
var StartupTools = []string{
	"true", "rg", "grep", "sed", "awk", "cat", "head", "tail", "find", "stat",
	"ls", "git", "python3", "sh", "bash", "wc", "sort", "uniq", "cut", "tr",
}
