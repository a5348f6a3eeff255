//go:build cgo && linux

package bench

/*
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

// ae_posix_spawn runs glibc's posix_spawn: stdin from /dev/null, stdout and
// stderr onto the given fds, cwd dir. argbuf and envbuf hold argc and envc
// NUL-terminated strings back to back. It returns the pid, or -errno.
static int ae_posix_spawn(const char *path, const char *argbuf, int argc, const char *envbuf, int envc,
		const char *dir, int out_fd, int err_fd) {
	char *argv[argc + 1];
	char *envp[envc + 1];
	const char *p = argbuf;
	for (int i = 0; i < argc; i++) { argv[i] = (char *)p; p += strlen(p) + 1; }
	argv[argc] = NULL;
	p = envbuf;
	for (int i = 0; i < envc; i++) { envp[i] = (char *)p; p += strlen(p) + 1; }
	envp[envc] = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	int rc = posix_spawn_file_actions_init(&fa);
	if (rc) return -rc;
	rc = posix_spawnattr_init(&at);
	if (rc) { posix_spawn_file_actions_destroy(&fa); return -rc; }
	sigset_t none;
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);
	rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (!rc) rc = posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
	if (!rc) rc = posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
	if (!rc) rc = posix_spawn_file_actions_addchdir_np(&fa, dir);
	pid_t pid = -1;
	if (!rc) rc = posix_spawn(&pid, path, &fa, &at, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	return rc ? -rc : (int)pid;
}
*/
import "C"

import (
	"context"
	"fmt"
	"strings"
	"syscall"
)

// posixSpawnBackend is the baseline in cgo builds: glibc's posix_spawn (clone with
// CLONE_VM|CLONE_VFORK, then execve), two pipes, wait4.
type posixSpawnBackend struct{}

func (posixSpawnBackend) name() string { return KindPosixSpawn }

func (posixSpawnBackend) run(_ context.Context, t *target) (outcome, error) {
	outR, outW, errR, errW, err := outputPipes()
	if err != nil {
		return outcome{}, err
	}
	path, dir := C.CBytes([]byte(t.path+"\x00")), C.CBytes([]byte(t.dir+"\x00"))
	args := C.CBytes([]byte(strings.Join(t.argv, "\x00") + "\x00"))
	env := C.CBytes([]byte(strings.Join(t.env, "\x00") + "\x00"))
	pid := int(C.ae_posix_spawn((*C.char)(path), (*C.char)(args), C.int(len(t.argv)), (*C.char)(env), C.int(len(t.env)), (*C.char)(dir), C.int(outW.Fd()), C.int(errW.Fd())))
	C.free(args)
	C.free(env)
	C.free(path)
	C.free(dir)
	outW.Close()
	errW.Close()
	if pid < 0 {
		outR.Close()
		errR.Close()
		return outcome{}, fmt.Errorf("posix_spawn %s: %w", t.path, syscall.Errno(-pid))
	}
	return collect(pid, outR, errR)
}

func (posixSpawnBackend) close() error { return nil }

// newBaseline returns the baseline backend: posix_spawn in cgo builds.
func newBaseline() (backend, BackendInfo, error) {
	return posixSpawnBackend{}, BackendInfo{Name: KindPosixSpawn, Available: true,
		Description: "posix_spawn (glibc, via cgo; vfork+exec, no sandbox), 2 pipes, wait4"}, nil
}
