// Package ciproject is a small project that configs/jobs/go-project.yaml builds,
// vets and tests inside the agentexec sandbox.
package ciproject

import (
	"sort"
	"strings"
	"unicode"
)

// WordCount is a word and how often it occurs.
type WordCount struct {
	Word  string
	Count int
}

// Count splits text into lower-cased words and returns them by descending count,
// ties in alphabetical order.
func Count(text string) []WordCount {
	counts := map[string]int{}
	for _, w := range strings.FieldsFunc(text, func(r rune) bool { return !unicode.IsLetter(r) && r != '\'' }) {
		counts[strings.ToLower(w)]++
	}
	out := make([]WordCount, 0, len(counts))
	for w, c := range counts {
		out = append(out, WordCount{w, c})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Word < out[j].Word
	})
	return out
}
