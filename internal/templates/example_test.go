package templates_test

import (
	"fmt"
	"os/exec"
	"path/filepath"

	"github.com/agentexec/agentexec/internal/templates"
)

func ExampleRegistry() {
	path, _ := exec.LookPath("true")
	path, _ = filepath.EvalSymlinks(path)

	r := templates.NewRegistry()
	defer r.Close()
	if err := r.Add("true", path, true); err != nil { // hot: opened and keyed now
		fmt.Println(err)
		return
	}
	r.SetBaseEnv("true", []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8"})
	for range 2 {
		snap, state, err := r.Get("true") // one statx per launch
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(state, snap.Path == path, snap.ELF, len(snap.BaseEnv))
		// launch: syscall.ForkExec(snap.Path, argv, &syscall.ProcAttr{Env: snap.BaseEnv, ...})
	}
	fmt.Printf("%+v\n", r.Stats())
	// Output:
	// hit true true 2
	// hit true true 2
	// {Hits:2 Recreations:0 Creations:1}
}

func ExampleNewSpawnSpec() {
	spec := templates.NewSpawnSpec([]string{"rg", "-n", "TODO"}, []string{"PATH=/usr/bin"})
	spec.Stdout, spec.Stderr = 5, 6 // write ends of the result pipes
	fmt.Println(spec.Stdin == templates.NoFD, spec.DirFD == templates.NoFD)
	// Output: true true
}
