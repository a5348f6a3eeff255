package templates_test

import (
	"fmt"

	"github.com/agentexec/agentexec/internal/templates"
)

func ExampleNewSpawnSpec() {
	spec := templates.NewSpawnSpec([]string{"rg", "-n", "TODO"}, []string{"PATH=/usr/bin"})
	spec.Stdout, spec.Stderr = 5, 6 // write ends of the result pipes
	fmt.Println(spec.Stdin == templates.NoFD, spec.DirFD == templates.NoFD)
	// Output: true true
}
