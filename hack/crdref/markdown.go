package main

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
)

func compactJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// text turns a schema description into one markdown paragraph: lines joined, blank lines
// kept as breaks, and the characters markdown would act on escaped.
func text(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	var paras []string
	for p := range strings.SplitSeq(s, "\n\n") {
		paras = append(paras, escape(oneLine(p)))
	}
	return strings.Join(paras, "<br>")
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

var escaper = strings.NewReplacer(`\`, `\\`, "`", "\\`", "*", `\*`, "_", `\_`, "<", "&lt;")

func escape(s string) string { return escaper.Replace(s) }

// code is an inline code span that holds any text, backticks included.
func code(s string) string {
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		return fence + " " + s + " " + fence
	}
	return fence + s + fence
}

func codes(list []string) string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = code(s)
	}
	return strings.Join(out, ", ")
}

// cell makes text safe inside a table row: GitHub ends a cell at any unescaped pipe, even
// inside a code span.
func cell(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\n", " "), "|", `\|`)
}
