package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

const testTag = "ghcr.io/postwarden/postwarden:v0.1.0-test"

// The tests share two tiny static binaries, built once: cross-compiling is most of the
// time the tests take.
var (
	binariesOnce sync.Once
	binariesDir  string
	binariesErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binariesDir != "" {
		os.RemoveAll(binariesDir)
	}
	os.Exit(code)
}

// helloBinaries returns static hello-world binaries for linux/amd64 and linux/arm64.
func helloBinaries(t *testing.T) (amd64, arm64 string) {
	t.Helper()
	binariesOnce.Do(func() {
		binariesDir, binariesErr = os.MkdirTemp("", "image-test-")
		if binariesErr != nil {
			return
		}
		src := filepath.Join(binariesDir, "src")
		if binariesErr = os.MkdirAll(src, 0o755); binariesErr != nil {
			return
		}
		files := map[string]string{
			"go.mod":  "module hello\n\ngo 1.26\n",
			"main.go": "package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(\"hello\\n\") }\n",
		}
		for name, content := range files {
			if binariesErr = os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); binariesErr != nil {
				return
			}
		}
		for _, arch := range []string{"amd64", "arm64"} {
			cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(binariesDir, arch, "hello"), ".")
			cmd.Dir = src
			cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
			if out, err := cmd.CombinedOutput(); err != nil {
				binariesErr = errors.Join(err, errors.New(string(out)))
				return
			}
		}
	})
	if binariesErr != nil {
		t.Fatalf("building the hello binaries: %v", binariesErr)
	}
	return filepath.Join(binariesDir, "amd64", "hello"), filepath.Join(binariesDir, "arm64", "hello")
}

// build runs the command with the standard test flags plus extra, writing into dir.
func build(t *testing.T, dir string, extra ...string) (layoutDir, tarFile, output string) {
	t.Helper()
	amd64, arm64 := helloBinaries(t)
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	layoutDir, tarFile = filepath.Join(dir, "oci"), filepath.Join(dir, "image.tar")
	args := append([]string{
		"-binary", "linux/amd64=" + amd64,
		"-binary", "linux/arm64=" + arm64,
		"-ca-bundle", ca,
		"-version", "v0.1.0-test",
		"-revision", "0123456789abcdef0123456789abcdef01234567",
		"-label", "io.postwarden.test=yes",
		"-cmd", "relay",
		"-cmd", "-config=/etc/postwarden/relay.json",
		"-tag", testTag,
		"-oci-layout", layoutDir,
		"-tar", tarFile,
	}, extra...)
	var out bytes.Buffer
	if err := run(args, &out); err != nil {
		t.Fatalf("run: %v", err)
	}
	return layoutDir, tarFile, out.String()
}

type entry struct {
	hdr  *tar.Header
	data []byte
}

// layerFiles reads the image's only layer.
func layerFiles(t *testing.T, img v1.Image) map[string]entry {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]entry{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[hdr.Name] = entry{hdr, data}
	}
}
