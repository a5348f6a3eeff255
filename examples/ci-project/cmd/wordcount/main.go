// Command wordcount prints the words of its standard input by frequency.
package main

import (
	"fmt"
	"io"
	"os"

	"example.com/ciproject"
)

func main() {
	b, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, wc := range ciproject.Count(string(b)) {
		fmt.Printf("%6d %s\n", wc.Count, wc.Word)
	}
}
