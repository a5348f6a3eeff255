//go:build !cgo || !linux

package bench

// newBaseline returns the baseline backend: without cgo, forkexec.
func newBaseline() (backend, BackendInfo, error) {
	fe, err := newForkExecBackend()
	if err != nil {
		return nil, BackendInfo{}, err
	}
	return fe, forkExecInfo, nil
}
