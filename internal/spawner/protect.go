package spawner

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/osthread"
	"github.com/agentexec/agentexec/internal/sys"
	"github.com/agentexec/agentexec/policy"
)

// Repository metadata protection (docs/security.md, "Repository metadata"): git runs
// code named in a repository's config (core.fsmonitor, core.pager, …) and in its
// hooks, so a tool that may write a workspace could plant code that the agent's next
// plain `git status` runs outside the sandbox. Landlock cannot carve a read-only
// hole in a write root, so the protection uses mounts, in the spawner's private mount
// namespace: the paths git takes code from are bound onto themselves read-only, and
// the directories that lead to them are bound onto themselves (read-write) so that
// they cannot be renamed or removed and replaced by fresh ones.
//
// ScanProtection looks at the host (when the runtime starts; check does the same),
// PlanProtection decides from what it found (a pure function), and
// Protection.MountPlan is what the spawner applies.

// EntryKind is what lstat(2) found at a path.
type EntryKind uint8

// Entry kinds.
const (
	KindNone EntryKind = iota // absent (or unreadable)
	KindDir
	KindFile
	KindSymlink
	KindOther // device, socket, fifo
)

func kindOf(m fs.FileMode) EntryKind {
	switch {
	case m.IsDir():
		return KindDir
	case m.IsRegular():
		return KindFile
	case m&fs.ModeSymlink != 0:
		return KindSymlink
	}
	return KindOther
}

func lstatKind(path string) EntryKind {
	fi, err := os.Lstat(path)
	if err != nil {
		return KindNone
	}
	return kindOf(fi.Mode())
}

// Repo is a git repository found beneath a writable root.
type Repo struct {
	// DotGit is the repository's .git: a directory, or a file ("gitdir: …") for
	// linked worktrees, submodules and --separate-git-dir.
	DotGit string
	// GitDirs are the git directories git reads for it: the .git directory (or the
	// file's target), with their worktrees/* and modules/** (submodules) directories.
	GitDirs []string
	// Named are the paths the configs of GitDirs name for git to take code or more
	// config from: core.hooksPath (husky's .husky, say) and include.path /
	// includeIf.*.path, absolute.
	Named []string
}

// ProtectFacts is what ScanProtection found on the host: the input of
// PlanProtection.
type ProtectFacts struct {
	// Roots are the profile's writable roots, the outermost ones only (a root beneath
	// another is left out), sorted.
	Roots []string
	// Protect are the profile's protect: paths.
	Protect []string
	// Repos are the repositories found beneath Roots, by DotGit.
	Repos []Repo
	// Kinds holds lstat(2) of every path PlanProtection looks up (.git, the git
	// directories and their entries, the protect paths); a path not in it is absent.
	Kinds map[string]EntryKind
	// Incomplete says what the scan did not cover (limits, unreadable directories).
	Incomplete []string
}

// Protection is a profile's protection of repository metadata and protect: paths.
type Protection struct {
	// Repos are the .git paths of the repositories found, sorted.
	Repos []string
	// ReadOnly are the paths kept read-only for tools (files and directories).
	ReadOnly []string
	// Pinned are directories bound onto themselves: tools may write beneath them but
	// cannot rename or remove them (EBUSY).
	Pinned []string
	// Missing are paths that would be protected but are absent or symbolic links
	// (a mount needs an existing target): a tool can create or replace them.
	Missing []string
	// Incomplete says what the scan of the writable roots did not cover.
	Incomplete []string
	// ops is the mount plan, parents before children.
	ops []MountOp
}

// gitDirEntries are the entries of a git directory kept read-only when they exist:
// git reads code to run from config (and config.worktree, with
// extensions.worktreeConfig) and hooks/; commondir names the directory holding the
// config and hooks of a linked worktree; info/ holds attributes and excludes.
var gitDirEntries = []string{"config", "config.worktree", "commondir", "hooks", "info"}

// Scan limits, per writable root: directories deeper than scanMaxDepth below the root
// and directories beyond the first scanMaxDirs (breadth first) are not looked at, and
// at most scanMaxRepos repositories are protected; what is left out is reported.
const (
	scanMaxDepth  = 16
	scanMaxDirs   = 20000
	scanMaxRepos  = 256
	scanMaxModule = 8 // nesting of modules/ and of submodule names with slashes
)

// ScanProtection looks for git repositories beneath the profile's writable roots
// (without following symbolic links, not descending into .git directories) and
// records what exists of the paths PlanProtection will look at.
func ScanProtection(p *policy.Profile) *ProtectFacts {
	return scanProtection(p.FS.Write, p.FS.Protect, scanMaxDepth, scanMaxDirs, scanMaxRepos)
}

func scanProtection(write, protect []string, maxDepth, maxDirs, maxRepos int) *ProtectFacts {
	f := &ProtectFacts{Roots: outermost(write), Protect: slices.Clone(protect), Kinds: map[string]EntryKind{}}
	seenGitDir := map[string]bool{}
	var bufs [scanWorkers][]byte
	bufs[0] = make([]byte, 32<<10)
	for _, root := range f.Roots {
		if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
			continue // a file (/dev/null) or absent: nothing to scan
		}
		s := rootScan{f: f, root: root, maxDepth: maxDepth, maxDirs: maxDirs, maxRepos: maxRepos, seen: seenGitDir, bufs: &bufs}
		s.walk()
	}
	for _, p := range protect {
		f.Kinds[p] = lstatKind(p)
	}
	return f
}

// outermost returns the sorted roots that lie beneath no other root.
func outermost(roots []string) []string {
	s := slices.Clone(roots)
	slices.Sort(s)
	var out []string
	for _, r := range s {
		if !slices.ContainsFunc(out, func(o string) bool { return policy.Beneath(r, o) }) {
			out = append(out, r)
		}
	}
	return out
}

type rootScan struct {
	f                           *ProtectFacts
	root                        string
	maxDepth, maxDirs, maxRepos int
	seen                        map[string]bool
	repos                       int
	// bufs receive the directory entries of listLevel's goroutines, shared by the
	// scan's roots.
	bufs *[scanWorkers][]byte
}

// walk scans one root breadth first, so that limits cut the deepest directories:
// level by level, each level's directories listed by a few goroutines at once
// (listLevel), the results then taken in order, so that what is found, and what
// the limits cut, is what a scan of one directory at a time finds.
func (s *rootScan) walk() {
	level := []string{s.root}
	read := 0
	var cut cutoffs
	for depth := 0; len(level) > 0; depth++ {
		n := min(len(level), s.maxDirs-read)
		listed := s.listLevel(level[:n], depth == 0)
		read += n
		var next []string
		for i, l := range listed {
			dir := level[i]
			if l.err != nil {
				cut.unreadable = append(cut.unreadable, fmt.Sprintf("%s (%v)", dir, l.err))
				continue
			}
			prefix := strings.TrimSuffix(dir, "/") + "/"
			if l.dotGit != KindNone {
				path := prefix + ".git"
				if s.repos >= s.maxRepos {
					cut.repo(path)
				} else if s.addRepo(path, l.dotGit) {
					s.repos++
				}
			}
			for _, name := range l.subdirs {
				path := prefix + name
				if depth+1 > s.maxDepth {
					cut.deep(path)
					continue
				}
				next = append(next, path)
			}
		}
		if n < len(level) {
			// The queue of a scan of one directory at a time: the rest of this
			// level, then the subdirectories of what was read.
			left := len(level) - n + len(next)
			s.f.Incomplete = append(s.f.Incomplete, fmt.Sprintf(
				"%s: scan stopped after %d directories: %d directories and everything beneath them not scanned (first %s)",
				s.root, s.maxDirs, left, level[n]))
			break
		}
		level = next
	}
	cut.report(s)
}

// cutoffs is what a root's scan left out by its depth and repository limits, and
// the directories it could not read: counted with the first of each, then said in
// the findings (report).
type cutoffs struct {
	tooDeep, skippedRepos int
	firstDeep, firstRepo  string
	unreadable            []string // "dir (error)"
}

func (c *cutoffs) deep(path string) {
	c.tooDeep++
	if c.firstDeep == "" {
		c.firstDeep = path
	}
}

func (c *cutoffs) repo(path string) {
	c.skippedRepos++
	if c.firstRepo == "" {
		c.firstRepo = path
	}
}

// report adds what was left out to the root's Incomplete findings.
func (c *cutoffs) report(s *rootScan) {
	if c.tooDeep > 0 {
		s.f.Incomplete = append(s.f.Incomplete, fmt.Sprintf("%s: %d directories deeper than %d levels not scanned (first %s)",
			s.root, c.tooDeep, s.maxDepth, c.firstDeep))
	}
	if c.skippedRepos > 0 {
		s.f.Incomplete = append(s.f.Incomplete, fmt.Sprintf("%s: more than %d repositories: %d not protected (first %s)",
			s.root, s.maxRepos, c.skippedRepos, c.firstRepo))
	}
	if n := len(c.unreadable); n > 0 {
		s.f.Incomplete = append(s.f.Incomplete, fmt.Sprintf("%s: %d directories unreadable, not scanned: %s",
			s.root, n, strings.Join(c.unreadable[:min(n, 3)], ", ")))
	}
}

// listedDir is what listing one directory found: its subdirectories (in name
// order), the kind of its .git entry (KindNone: none), or why it could not be read.
type listedDir struct {
	subdirs []string
	dotGit  EntryKind
	err     error
}

// scanWorkers bounds the goroutines that list one level of the scan; levels of
// fewer than scanParallelMin directories are listed by the calling goroutine.
const (
	scanWorkers     = 4
	scanParallelMin = 16
)

// listLevel lists dirs, one level of the scan, into a result per directory.
func (s *rootScan) listLevel(dirs []string, follow bool) []listedDir {
	out := make([]listedDir, len(dirs))
	workers := min(runtime.GOMAXPROCS(0), scanWorkers, len(dirs)/scanParallelMin+1)
	if workers <= 1 {
		for i, d := range dirs {
			out[i] = listDir(d, follow, s.bufs[0])
		}
		return out
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		if s.bufs[w] == nil {
			s.bufs[w] = make([]byte, len(s.bufs[0]))
		}
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(dirs) {
					return
				}
				out[i] = listDir(dirs[i], follow, s.bufs[w])
			}
		})
	}
	wg.Wait()
	return out
}

// listDir lists one directory of the scan into buf: no stat, no allocation per
// entry but for the subdirectories. The root is followed if it is a symbolic link
// (follow, as os.Stat does); beneath it, only directories are listed (O_NOFOLLOW).
func listDir(dir string, follow bool, buf []byte) listedDir {
	var l listedDir
	l.err = listEntries(dir, follow, buf, func(name []byte, kind EntryKind) {
		switch {
		case string(name) == ".git":
			l.dotGit = kind
		case kind == KindDir:
			l.subdirs = append(l.subdirs, string(name))
		}
	})
	// In name order, as os.ReadDir gave them: limits cut the same directories on
	// every run.
	slices.Sort(l.subdirs)
	return l
}

// listEntries calls fn with the name (valid during the call only) and kind of
// each entry of dir but "." and "..", read with getdents64 into buf. The kind is
// the entry's d_type; where the filesystem does not fill it in, an lstat of the
// entry (fstatat with AT_SYMLINK_NOFOLLOW). follow lets dir itself be a symbolic
// link.
func listEntries(dir string, follow bool, buf []byte, fn func(name []byte, kind EntryKind)) error {
	flags := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC
	if !follow {
		flags |= unix.O_NOFOLLOW
	}
	var fd int
	var err error
	for {
		fd, err = unix.Open(dir, flags, 0)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for {
		n, err := sys.Getdents(fd, buf)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		for name, typ := range sys.Dirents(buf[:n]) {
			kind := direntKind(typ)
			if typ == unix.DT_UNKNOWN {
				var st unix.Stat_t
				kind = KindNone
				if unix.Fstatat(fd, string(name), &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
					kind = kindOfMode(st.Mode)
				}
			}
			if kind != KindNone {
				fn(name, kind)
			}
		}
	}
}

// direntKind is the kind of a directory entry's d_type (KindNone for DT_UNKNOWN).
func direntKind(typ uint8) EntryKind {
	switch typ {
	case unix.DT_UNKNOWN:
		return KindNone
	case unix.DT_DIR:
		return KindDir
	case unix.DT_REG:
		return KindFile
	case unix.DT_LNK:
		return KindSymlink
	}
	return KindOther
}

// kindOfMode is the kind of a stat(2) mode.
func kindOfMode(mode uint32) EntryKind {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return KindDir
	case unix.S_IFREG:
		return KindFile
	case unix.S_IFLNK:
		return KindSymlink
	}
	return KindOther
}

// addRepo records the repository of a .git entry; false if it was no repository.
func (s *rootScan) addRepo(dotGit string, kind EntryKind) bool {
	s.f.Kinds[dotGit] = kind
	repo := Repo{DotGit: dotGit}
	switch kind {
	case KindDir:
		repo.GitDirs = s.gitDirs(dotGit, 0)
	case KindFile:
		target, err := readGitFile(dotGit)
		if err != nil {
			s.f.Incomplete = append(s.f.Incomplete, fmt.Sprintf("%s: %v", dotGit, err))
		} else {
			repo.GitDirs = s.gitDirs(target, 0)
		}
	default:
		s.f.Incomplete = append(s.f.Incomplete, fmt.Sprintf("%s: neither a directory nor a gitdir file: not protected", dotGit))
	}
	for i, g := range repo.GitDirs {
		if s.f.Kinds[g+"/config"] != KindFile {
			continue
		}
		// A relative core.hooksPath is taken from the top of the worktree: known for
		// the repository's own git directory (the first).
		worktree := ""
		if i == 0 {
			worktree = filepath.Dir(dotGit)
		}
		named, err := configNamed(g+"/config", worktree)
		if err != nil {
			s.f.Incomplete = append(s.f.Incomplete, fmt.Sprintf("%s/config: %v", g, err))
		}
		for _, n := range named {
			s.f.Kinds[n] = lstatKind(n)
			repo.Named = append(repo.Named, n)
		}
	}
	s.f.Repos = append(s.f.Repos, repo)
	return true
}

// configNamed reads a git config file for the paths it names that git takes code or
// more config from: core.hooksPath and include.path / includeIf.*.path. It is a
// plain reader (sections, keys case-insensitive, quoted or bare values), not git's:
// continuation lines and escapes are not followed. A relative include is taken from
// the config file's directory, a relative hooksPath from worktree (left out when
// worktree is "").
func configNamed(path, worktree string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	home, _ := os.UserHomeDir()
	var out []string
	section := ""
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			// [section] or [section "subsection"]: "includeif" with its condition,
			// "core" and "include" without.
			name, _, _ := strings.Cut(strings.TrimPrefix(line, "["), "]")
			name, sub, _ := strings.Cut(strings.TrimSpace(name), "\"")
			section = strings.ToLower(strings.TrimSpace(name))
			if sub != "" && section != "includeif" {
				section += ".sub"
			}
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		key = strings.ToLower(strings.TrimSpace(key))
		var base string
		switch {
		case section == "core" && key == "hookspath":
			base = worktree
		case (section == "include" || section == "includeif") && key == "path":
			base = filepath.Dir(path)
		default:
			continue
		}
		v := strings.TrimSpace(value)
		if strings.HasPrefix(v, `"`) {
			v, _, _ = strings.Cut(v[1:], `"`)
		} else if i := strings.IndexAny(v, "#;"); i >= 0 {
			v = strings.TrimSpace(v[:i])
		}
		switch {
		case v == "":
			continue
		case strings.HasPrefix(v, "~/"):
			if home == "" {
				continue
			}
			v = filepath.Join(home, v[2:])
		case !filepath.IsAbs(v):
			if base == "" {
				continue
			}
			v = filepath.Join(base, v)
		}
		out = append(out, filepath.Clean(v))
	}
	return out, nil
}

// readGitFile returns the git directory a .git file names ("gitdir: PATH").
func readGitFile(path string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, 4096))
	if err != nil {
		return "", err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	target, ok := strings.CutPrefix(strings.TrimSpace(string(line)), "gitdir:")
	target = strings.TrimSpace(target)
	if !ok || target == "" {
		return "", errors.New(`not a gitdir file (no "gitdir: PATH" line): not protected`)
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(path), target)
	}
	return filepath.Clean(target), nil
}

// gitDirs returns g and the git directories beneath it (worktrees/*, modules/**),
// recording the kinds of their entries. Each git directory is listed once for the
// whole scan (a submodule's gitdir is reached from its .git file and from modules/).
func (s *rootScan) gitDirs(g string, depth int) []string {
	if s.seen[g] {
		return nil
	}
	s.seen[g] = true
	s.f.Kinds[g] = lstatKind(g)
	if s.f.Kinds[g] != KindDir {
		return []string{g}
	}
	for _, name := range gitDirEntries {
		s.f.Kinds[g+"/"+name] = lstatKind(g + "/" + name)
	}
	out := []string{g}
	if ents, err := os.ReadDir(g + "/worktrees"); err == nil {
		for _, e := range ents {
			if e.IsDir() {
				out = append(out, s.gitDirs(g+"/worktrees/"+e.Name(), depth+1)...)
			}
		}
	}
	return append(out, s.modules(g+"/modules", depth)...)
}

// modules finds the submodule git directories beneath dir (a submodule's name may
// contain slashes: modules/lib/a). A directory with a HEAD is a git directory.
func (s *rootScan) modules(dir string, depth int) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	if depth >= scanMaxModule {
		s.f.Incomplete = append(s.f.Incomplete, fmt.Sprintf("%s: submodules nested deeper than %d levels not scanned", dir, scanMaxModule))
		return nil
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		d := dir + "/" + e.Name()
		if lstatKind(d+"/HEAD") == KindFile {
			out = append(out, s.gitDirs(d, depth+1)...)
		} else {
			out = append(out, s.modules(d, depth+1)...)
		}
	}
	return out
}

// PlanProtection decides, from what the scan found, which paths are kept read-only
// and which directories are pinned, and the mount operations that do it. It reads
// nothing but f.
func PlanProtection(f *ProtectFacts) *Protection {
	p := &Protection{Incomplete: slices.Clone(f.Incomplete)}
	ro, pin, missing := map[string]bool{}, map[string]bool{}, map[string]bool{}
	outer := func(path string) string {
		for _, r := range f.Roots {
			if policy.Beneath(path, r) {
				return r
			}
		}
		return ""
	}
	// pinDirs pins dir and every directory between it and its writable root: a tool
	// could otherwise rename any of them away and put a fresh one in its place. The
	// root itself stays: renaming it needs write access to its parent, which no
	// root grants (it is an outermost root).
	pinDirs := func(dir string) {
		r := outer(dir)
		if r == "" {
			return
		}
		for d := dir; d != r && d != "/" && d != "."; d = filepath.Dir(d) {
			pin[d] = true
		}
	}
	for _, repo := range f.Repos {
		p.Repos = append(p.Repos, repo.DotGit)
		switch f.Kinds[repo.DotGit] {
		case KindDir:
			pinDirs(repo.DotGit)
		case KindFile:
			pinDirs(filepath.Dir(repo.DotGit))
			ro[repo.DotGit] = true
		}
		for _, g := range repo.GitDirs {
			if outer(g) == "" || f.Kinds[g] != KindDir {
				continue // tools cannot write it (or it is not there)
			}
			pinDirs(g)
			// A linked worktree's own git directory (it has a commondir) takes its
			// config and hooks from the common directory; it needs neither.
			linked := f.Kinds[g+"/commondir"] != KindNone
			for _, name := range gitDirEntries {
				path := g + "/" + name
				switch f.Kinds[path] {
				case KindFile, KindDir:
					ro[path] = true
				case KindNone:
					if !linked && (name == "config" || name == "hooks") {
						missing[path+": absent: a tool can create it"] = true
					}
				default:
					missing[path+": not a file or directory (a symbolic link?): not protected"] = true
				}
			}
		}
	}
	protect := slices.Clone(f.Protect)
	named := map[string]bool{}
	for _, repo := range f.Repos {
		for _, n := range repo.Named {
			named[n] = true
			protect = append(protect, n)
		}
	}
	for _, path := range protect {
		switch f.Kinds[path] {
		case KindNone:
			if named[path] && outer(path) == "" {
				continue // named by a config, and out of the tools' reach
			}
			missing[path+": absent: a tool can create it"] = true
		case KindSymlink:
			missing[path+": a symbolic link: not protected (name its target)"] = true
		default:
			pinDirs(filepath.Dir(path))
			ro[path] = true
		}
	}
	// Targets beneath a read-only one are read-only already: no mount of their own.
	var roots []string
	for path := range ro {
		roots = append(roots, path)
	}
	beneathRO := func(path string) bool {
		return slices.ContainsFunc(roots, func(r string) bool { return r != path && policy.Beneath(path, r) })
	}
	for path := range ro {
		if !beneathRO(path) {
			p.ReadOnly = append(p.ReadOnly, path)
			p.ops = append(p.ops, MountOp{Kind: MountBind, Target: path, AttrSet: unix.MOUNT_ATTR_RDONLY, Optional: true})
		}
	}
	for path := range pin {
		if !ro[path] && !beneathRO(path) {
			p.Pinned = append(p.Pinned, path)
			p.ops = append(p.ops, MountOp{Kind: MountBind, Target: path, Optional: true})
		}
	}
	for m := range missing {
		p.Missing = append(p.Missing, m)
	}
	slices.Sort(p.Repos)
	slices.Sort(p.ReadOnly)
	slices.Sort(p.Pinned)
	slices.Sort(p.Missing)
	// Parents before children: a bind of a directory copies the mounts beneath it,
	// so a child's mount must come after its parent's.
	slices.SortFunc(p.ops, func(a, b MountOp) int {
		da, db := strings.Count(a.Target, "/"), strings.Count(b.Target, "/")
		if da != db {
			return da - db
		}
		return strings.Compare(a.Target, b.Target)
	})
	return p
}

// Empty reports whether there is nothing to mount.
func (p *Protection) Empty() bool { return len(p.ops) == 0 }

// MountPlan returns the mount operations for a spawner whose main process is in
// mount namespace host; nil when there is nothing to mount.
func (p *Protection) MountPlan(host NSID) *MountPlan {
	if p.Empty() {
		return nil
	}
	return &MountPlan{HostNS: host, Ops: slices.Clone(p.ops)}
}

// Unenforced lists what a profile's tools can still write of what the protection
// covers, for Result.Unenforced: everything when there is no private mount
// namespace (why says why), and the parts of the writable roots the scan left out.
func (p *Protection) Unenforced(available bool, why string) []string {
	var out []string
	if !available && !p.Empty() {
		out = append(out, fmt.Sprintf("protect: no private mount namespace (%s): %d read-only paths and %d pinned directories not protected (%d repositories)",
			why, len(p.ReadOnly), len(p.Pinned), len(p.Repos)))
	}
	for _, s := range p.Incomplete {
		out = append(out, "protect: scan incomplete: "+s)
	}
	return out
}

var mountNS = sync.OnceValues(probeMountNS)

// MountNSAvailable reports whether this process can give spawners a private mount
// namespace (root, or CAP_SYS_ADMIN): it unshares CLONE_NEWNS on a throwaway thread
// and makes its mounts slaves there, as a spawner does. The answer is cached.
func MountNSAvailable() (bool, string) { return mountNS() }

func probeMountNS() (bool, string) {
	var why string
	err := osthread.Throwaway(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			why = fmt.Sprintf("unshare(CLONE_NEWNS): %v (needs CAP_SYS_ADMIN: run as root)", err)
			return err
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
			why = fmt.Sprintf("mount --make-rslave / in a new mount namespace: %v", err)
			return err
		}
		return nil
	})
	if err != nil {
		return false, why
	}
	return true, "unshare(CLONE_NEWNS) works"
}

// EnsureHookDirs creates the hooks/ and info/ directories that a repository's git
// directories lack (git init makes both; some clones and tools leave them out), empty,
// with the git directory's owner, group and mode bits, so that they exist to be kept
// read-only: a missing hooks/ could otherwise be created by a tool and filled with a
// hook the agent's next git command runs. It returns the directories it made. Only
// the main process of a root runtime calls it, before ScanProtection's result is
// planned (the caller rescans).
func EnsureHookDirs(f *ProtectFacts) (made []string, err error) {
	for _, r := range f.Repos {
		for _, gd := range r.GitDirs {
			// Every git directory found, HEAD or not: a tool could write HEAD later
			// and make one without it a repository whose hooks the agent's git runs.
			var st unix.Stat_t
			if unix.Lstat(gd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
				continue
			}
			for _, name := range []string{"hooks", "info"} {
				p := filepath.Join(gd, name)
				if k, ok := f.Kinds[p]; ok && k != KindNone {
					continue // present (or a symlink, which stays reported as missing)
				}
				if err := os.Mkdir(p, os.FileMode(st.Mode&0o777)); err != nil {
					if errors.Is(err, os.ErrExist) {
						continue
					}
					return made, fmt.Errorf("protect: create %s: %w", p, err)
				}
				if err := os.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
					return made, fmt.Errorf("protect: chown %s: %w", p, err)
				}
				made = append(made, p)
			}
		}
	}
	return made, nil
}

// Sentinels are the paths that must not come into existence in the repositories'
// git directories while tools run: commondir, where absent at start (a linked
// worktree's own commondir exists and is kept read-only instead). A tool that
// creates one sends git to a directory of its making, config and hooks included;
// mounts cannot forbid a new entry in a writable directory, so the runtime removes
// it at the end of every launch.
func Sentinels(f *ProtectFacts) []string {
	var out []string
	for _, r := range f.Repos {
		for _, gd := range r.GitDirs {
			p := filepath.Join(gd, "commondir")
			if k, ok := f.Kinds[p]; !ok || k == KindNone {
				out = append(out, p)
			}
		}
	}
	return out
}
