package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOCILayoutRefusesToReplaceAnythingElse(t *testing.T) {
	amd64, _ := helloBinaries(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "precious.txt"), []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := run([]string{"-binary", "linux/amd64=" + amd64, "-oci-layout", dir}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "is not an OCI layout; not replacing it") {
		t.Fatalf("error = %v, want a refusal", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "precious.txt")); err != nil {
		t.Fatalf("the directory was changed: %v", err)
	}
	file := filepath.Join(dir, "precious.txt")
	err = run([]string{"-binary", "linux/amd64=" + amd64, "-oci-layout", file}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "is not a directory; not replacing it") {
		t.Fatalf("error = %v, want a refusal", err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me" {
		t.Fatalf("the file was changed: %q, %v", b, err)
	}
}
