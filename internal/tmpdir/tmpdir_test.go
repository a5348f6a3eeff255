package tmpdir

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/agentexec/agentexec/policy"
)

// Make gives an absolute directory of mode 0700 under $TMPDIR, even when $TMPDIR
// is relative and the umask would leave less; Remove takes it with what is in it.
func TestMakeRemove(t *testing.T) {
	base := t.TempDir()
	t.Chdir(base)
	if err := os.Mkdir("rel", 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", "rel")
	dir, err := Make(0, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || !filepath.IsAbs(dir) || fi.Mode().Perm() != 0o700 || filepath.Dir(dir) != filepath.Join(base, "rel") {
		t.Fatalf("Make: %q, %v, %v", dir, fi.Mode(), err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o500); err != nil {
		t.Fatal(err)
	}
	if err := Remove(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("still there after Remove: %v", err)
	}
}

// TellTool sets TMPDIR for a tool that may write the directory and only then, and
// never over the policy's own TMPDIR or one the requests may set.
func TestTellTool(t *testing.T) {
	dir := "/tmp/agentexec-tmp-x"
	tool := func(write []string, env policy.Env) *policy.Tool {
		return &policy.Tool{Name: "t", Profile: &policy.Profile{FS: policy.FS{Write: write}}, Env: env}
	}
	for _, c := range []struct {
		name string
		t    *policy.Tool
		want int // TMPDIR entries in Env.Set after
	}{
		{"writes it", tool([]string{dir}, policy.Env{}), 1},
		{"writes a parent", tool([]string{"/tmp"}, policy.Env{}), 1},
		{"cannot write it", tool([]string{"/work"}, policy.Env{}), 0},
		{"policy sets TMPDIR", tool([]string{dir}, policy.Env{Set: []policy.EnvVar{{Name: "TMPDIR", Value: "/x"}}}), 1},
		{"requests may set it", tool([]string{dir}, policy.Env{Allow: []string{"TMP*"}}), 0},
	} {
		TellTool(c.t, dir)
		n := 0
		for _, v := range c.t.Env.Set {
			if v.Name == "TMPDIR" {
				n++
				if c.name != "policy sets TMPDIR" && v.Value != dir {
					t.Errorf("%s: TMPDIR=%s", c.name, v.Value)
				}
			}
		}
		if n != c.want {
			t.Errorf("%s: %d TMPDIR entries, want %d", c.name, n, c.want)
		}
	}
}
