package main

import (
	"io"
	"path/filepath"
	"strings"
	"testing"
)

func TestFlagErrorsAreClear(t *testing.T) {
	amd64, arm64 := helloBinaries(t)
	out := t.TempDir()
	ok := []string{"-binary", "linux/amd64=" + amd64, "-oci-layout", filepath.Join(out, "oci")}
	tests := map[string]struct {
		args []string
		want string
	}{
		"a missing binary is named": {
			args: []string{"-binary", "linux/amd64=" + filepath.Join(out, "nope"), "-oci-layout", filepath.Join(out, "oci")},
			want: `-binary "linux/amd64=` + filepath.Join(out, "nope") + `": stat ` + filepath.Join(out, "nope") + `: no such file or directory`,
		},
		"a platform without an architecture is refused": {
			args: []string{"-binary", "linux=" + amd64, "-oci-layout", filepath.Join(out, "oci")},
			want: `-binary "linux=` + amd64 + `": platform "linux": want os/arch or os/arch/variant, like linux/amd64`,
		},
		"a binary flag without a path is refused": {
			args: []string{"-binary", "linux/amd64", "-oci-layout", filepath.Join(out, "oci")},
			want: `-binary "linux/amd64": want os/arch=path`,
		},
		"a binary for another architecture is refused": {
			args: []string{"-binary", "linux/amd64=" + arm64, "-oci-layout", filepath.Join(out, "oci")},
			want: arm64 + " is built for EM_AARCH64, not amd64",
		},
		"a platform given twice is refused": {
			args: append([]string{"-binary", "linux/amd64=" + amd64}, ok...),
			want: "platform linux/amd64 given twice",
		},
		"a label without a value is refused": {
			args: append([]string{"-label", "team"}, ok...),
			want: `-label "team": want key=value with a key of letters, digits and . _ - /`,
		},
		"a label with a space in its key is refused": {
			args: append([]string{"-label", "my team=mail"}, ok...),
			want: `-label "my team=mail": want key=value`,
		},
		"a tarball needs a tag": {
			args: append([]string{"-tar", filepath.Join(out, "x.tar")}, ok...),
			want: "-tar needs -tag",
		},
		"a tag must be fully qualified": {
			args: append([]string{"-tag", "postwarden"}, ok...),
			want: `-tag "postwarden": want registry/repository:tag`,
		},
		"a tarball platform with no binary is refused": {
			args: append([]string{"-tag", testTag, "-tar", filepath.Join(out, "x.tar"), "-tar-platform", "linux/arm64"}, ok...),
			want: "-tar-platform linux/arm64/v8: no -binary for that platform",
		},
		"some output is needed": {
			args: []string{"-binary", "linux/amd64=" + amd64},
			want: "no output: give -oci-layout DIR, -tar FILE or both",
		},
		"a bad creation time is refused": {
			args: append([]string{"-created", "yesterday"}, ok...),
			want: `-created "yesterday": want RFC 3339`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := run(tc.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
