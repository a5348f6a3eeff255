package ciproject

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCount(t *testing.T) {
	got := Count("the cat and The dog; the END")
	if len(got) != 5 || got[0] != (WordCount{"the", 3}) || got[1] != (WordCount{"and", 1}) {
		t.Fatalf("Count = %v", got)
	}
}

func TestCountEmpty(t *testing.T) {
	if got := Count(" ,, "); len(got) != 0 {
		t.Fatalf("Count = %v, want nothing", got)
	}
}

// TestWritesOnlyWhereAllowed runs inside the sandbox: the test's temporary
// directory is writable, the module's parent is not.
func TestWritesOnlyWhereAllowed(t *testing.T) {
	if err := os.WriteFile(filepath.Join(t.TempDir(), "x"), []byte("ok"), 0o644); err != nil {
		t.Fatalf("write in TMPDIR: %v", err)
	}
}
