package yamlnode

// Lines is the number of lines in data as the YAML parser (gopkg.in/yaml.v3)
// counts them, and so as error positions (file:line:col) count them: "\n", "\r\n"
// and a lone "\r" each end a line, and so do NEL (U+0085), LS (U+2028) and PS
// (U+2029), which the parser takes as line breaks as YAML 1.1 did. A text without a
// final break still has its last line: "" is one line.
func Lines(data []byte) int {
	n := 1
	for i := 0; i < len(data); i++ {
		switch {
		case data[i] == '\r':
			if i+1 < len(data) && data[i+1] == '\n' {
				i++
			}
			n++
		case data[i] == '\n':
			n++
		case data[i] == 0xC2 && i+1 < len(data) && data[i+1] == 0x85: // NEL
			i++
			n++
		case data[i] == 0xE2 && i+2 < len(data) && data[i+1] == 0x80 && (data[i+2] == 0xA8 || data[i+2] == 0xA9): // LS, PS
			i += 2
			n++
		}
	}
	return n
}
