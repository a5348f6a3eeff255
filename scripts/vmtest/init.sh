#!/bin/sh
# /init of the agentexec VM-tier guest, written into the base initramfs by
# scripts/vmtest. It runs as PID 1 under busybox sh.
#
# Serial ports (set up by the host, see scripts/vmtest/qemu.go):
#   ttyS0  kernel console             -> console.log
#   ttyS1  test output stream         -> output.log
#   ttyS2  one line "VMTEST-EXIT <n>" -> exit.log
#   ttyS3  tar of $VMTEST_OUTDIR      -> files.tar
# The host fails any run that has no VMTEST-EXIT line.

export PATH=/bin:/sbin:/usr/bin:/usr/sbin
umask 022

out=/dev/ttyS1

report() { # report <exit code> <message>: last words, then power off.
	[ -n "$2" ] && echo "VMTEST-INIT: $2" >"$out"
	echo "VMTEST-END" >"$out"
	echo "VMTEST-EXIT $1" >/dev/ttyS2
	sync
	# qemu runs with -no-reboot: a reboot ends it. (poweroff -f would hang a
	# kernel without ACPI power-off, such as the RFC test kernel.)
	reboot -f
	sleep 5
	echo b >/proc/sysrq-trigger
}

setup_err=""
must() { # must <command...>: run it, remember the first failure.
	"$@" 2>/tmp/.must.err || {
		[ -z "$setup_err" ] && setup_err="$* failed: $(cat /tmp/.must.err 2>/dev/null)"
	}
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
must mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mkdir -p /dev/pts /dev/shm
must mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
must mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
must mount -t tmpfs -o mode=755 tmpfs /run
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null

# Raw mode on the data ports: no CR/LF translation, no echo.
for t in /dev/ttyS1 /dev/ttyS2 /dev/ttyS3; do
	must stty -F "$t" raw -echo
done

# cgroup v2 only, at the usual place, with every controller the kernel has (of
# cpuset, cpu, io, memory, pids) delegated to children. (The RFC test kernel has no
# io controller; guestcheck asserts all five on the Debian kernels.)
must mount -t cgroup2 cgroup2 /sys/fs/cgroup
ctrls=""
for c in $(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null); do
	case "$c" in cpuset|cpu|io|memory|pids) ctrls="$ctrls +$c" ;; esac
done
must sh -c "echo '${ctrls# }' >/sys/fs/cgroup/cgroup.subtree_control"

hostname vmtest 2>/dev/null
ip link set lo up 2>/dev/null

if [ -n "$setup_err" ]; then
	report 125 "guest setup failed: $setup_err"
fi
if [ ! -x /vmtest/testbin ]; then
	report 126 "no test binary at /vmtest/testbin"
fi

export HOME=/root USER=root LOGNAME=root TMPDIR=/tmp TERM=dumb
export AGENTEXEC_VM=1
AGENTEXEC_VM_KERNEL="$(uname -r)"
export AGENTEXEC_VM_KERNEL
export VMTEST_OUTDIR=/tmp/vmtest-out
mkdir -p "$VMTEST_OUTDIR"
[ -f /vmtest/env ] && . /vmtest/env
# Per-kernel variables from the harness (kernel command line: vmtest.env=NAME=VALUE).
for w in $(cat /proc/cmdline); do
	case "$w" in vmtest.env=*=*) export "${w#vmtest.env=}" ;; esac
done
export PATH="$PATH:/vmtest/bin"

# One test-binary argument per line.
set --
if [ -f /vmtest/args ]; then
	while IFS= read -r a; do set -- "$@" "$a"; done </vmtest/args
fi

cd /vmtest/pkg 2>/dev/null || cd /
echo "VMTEST-START kernel=$AGENTEXEC_VM_KERNEL lsm=$(cat /sys/kernel/security/lsm 2>/dev/null) args=$*" >"$out"
/vmtest/testbin "$@" >"$out" 2>&1 </dev/null
rc=$?

if [ -n "$(ls -A "$VMTEST_OUTDIR" 2>/dev/null)" ]; then
	tar -cf - -C "$VMTEST_OUTDIR" . >/dev/ttyS3 2>"$out"
fi
report "$rc" ""
