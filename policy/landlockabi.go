package policy

// The Landlock ABI version that first has each feature agentexec uses: the one
// table of them (cf. go-landlock's abi_versions.go). The policy's feature list
// (Profile.LandlockFeatures), the spawner's rulesets and `check` all read it, so a
// feature's version is written once.
const (
	LandlockABIFS         = 1 // filesystem access rights
	LandlockABIRefer      = 2 // LANDLOCK_ACCESS_FS_REFER: renames and links across directories
	LandlockABITruncate   = 3 // LANDLOCK_ACCESS_FS_TRUNCATE
	LandlockABINetTCP     = 4 // bind_tcp, connect_tcp
	LandlockABIIoctlDev   = 5 // LANDLOCK_ACCESS_FS_IOCTL_DEV
	LandlockABIScope      = 6 // scoped: signals and abstract unix sockets
	LandlockABIAuditFlags = 7 // landlock_restrict_self log flags (denials in the audit log)
)
