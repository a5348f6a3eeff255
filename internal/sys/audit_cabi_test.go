//go:build cgo && linux

package sys

import (
	"testing"
	"unsafe"

	"github.com/agentexec/agentexec/internal/sys/auditcabi"
)

// TestAuditStatusLayoutC compares AuditStatus and the audit constants with the
// installed kernel header <linux/audit.h>.
func TestAuditStatusLayoutC(t *testing.T) {
	var s AuditStatus
	for _, r := range []struct {
		name      string
		goVal, cV uintptr
	}{
		{"sizeof(audit_status)", unsafe.Sizeof(s), auditcabi.SizeofAuditStatus},
		{"mask", unsafe.Offsetof(s.Mask), auditcabi.OffMask},
		{"enabled", unsafe.Offsetof(s.Enabled), auditcabi.OffEnabled},
		{"failure", unsafe.Offsetof(s.Failure), auditcabi.OffFailure},
		{"pid", unsafe.Offsetof(s.PID), auditcabi.OffPID},
		{"rate_limit", unsafe.Offsetof(s.RateLimit), auditcabi.OffRateLimit},
		{"backlog_limit", unsafe.Offsetof(s.BacklogLimit), auditcabi.OffBacklogLimit},
		{"lost", unsafe.Offsetof(s.Lost), auditcabi.OffLost},
		{"backlog", unsafe.Offsetof(s.Backlog), auditcabi.OffBacklog},
		{"feature_bitmap", unsafe.Offsetof(s.FeatureBitmap), auditcabi.OffFeatureBitmap},
		{"backlog_wait_time", unsafe.Offsetof(s.BacklogWaitTime), auditcabi.OffBacklogWaitTime},
		{"backlog_wait_time_actual", unsafe.Offsetof(s.BacklogWaitTimeActual), auditcabi.OffBacklogWaitTimeActual},
		{"AUDIT_GET", AuditGet, auditcabi.AuditGet},
		{"AUDIT_SET", AuditSet, auditcabi.AuditSet},
		{"AUDIT_USER", AuditUser, auditcabi.AuditUser},
		{"AUDIT_SYSCALL", AuditSyscall, auditcabi.AuditSyscall},
		{"AUDIT_EOE", AuditEOE, auditcabi.AuditEOE},
		{"AUDIT_SECCOMP", AuditSeccomp, auditcabi.AuditSeccomp},
		{"AUDIT_NLGRP_READLOG", AuditNlgrpReadlog, auditcabi.AuditNlgrpReadlog},
	} {
		if r.goVal != r.cV {
			t.Errorf("%s: Go %d, C %d", r.name, r.goVal, r.cV)
		}
	}
}
