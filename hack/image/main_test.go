package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
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

func TestBuildWritesARunnableMultiPlatformImage(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1767225600") // 2026-01-01T00:00:00Z
	epoch := time.Unix(1767225600, 0).UTC()
	amd64Bin, _ := helloBinaries(t)
	layoutDir, tarFile, output := build(t, t.TempDir())

	outer, err := layout.ImageIndexFromPath(layoutDir)
	if err != nil {
		t.Fatal(err)
	}
	outerManifest, err := outer.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(outerManifest.Manifests) != 1 {
		t.Fatalf("index.json has %d entries, want 1 (the image index)", len(outerManifest.Manifests))
	}
	desc := outerManifest.Manifests[0]
	if got := desc.Annotations["org.opencontainers.image.ref.name"]; got != testTag {
		t.Errorf("ref.name annotation = %q, want %q", got, testTag)
	}
	index, err := outer.ImageIndex(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	indexDigest, err := index.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(output, indexDigest.String()) {
		t.Errorf("output does not print the index digest %s:\n%s", indexDigest, output)
	}
	im, err := index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	images := map[string]v1.Image{}
	for _, m := range im.Manifests {
		platforms = append(platforms, m.Platform.String())
		if images[m.Platform.String()], err = index.Image(m.Digest); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(output, m.Digest.String()) {
			t.Errorf("output does not print the %s digest %s", m.Platform, m.Digest)
		}
	}
	if want := []string{"linux/amd64", "linux/arm64/v8"}; !slices.Equal(platforms, want) {
		t.Fatalf("platforms = %v, want %v", platforms, want)
	}

	for platform, img := range images {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if got := cf.Platform().String(); got != platform {
			t.Errorf("%s: config platform = %s", platform, got)
		}
		c := cf.Config
		if !slices.Equal(c.Entrypoint, []string{"/postwarden"}) || !slices.Equal(c.Cmd, []string{"relay", "-config=/etc/postwarden/relay.json"}) {
			t.Errorf("%s: entrypoint %q cmd %q", platform, c.Entrypoint, c.Cmd)
		}
		if c.User != "65532:65532" || c.WorkingDir != "/" || !slices.Equal(c.Env, []string{"PATH=/"}) {
			t.Errorf("%s: user %q, workdir %q, env %q", platform, c.User, c.WorkingDir, c.Env)
		}
		wantLabels := map[string]string{
			"io.postwarden.test":                "yes",
			"org.opencontainers.image.version":  "v0.1.0-test",
			"org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567",
			"org.opencontainers.image.licenses": "Apache-2.0",
			"org.opencontainers.image.title":    "postwarden",
			"org.opencontainers.image.source":   "https://github.com/postwarden/postwarden",
			"org.opencontainers.image.created":  "2026-01-01T00:00:00Z",
		}
		for k, v := range wantLabels {
			if c.Labels[k] != v {
				t.Errorf("%s: label %s = %q, want %q", platform, k, c.Labels[k], v)
			}
		}
		if !cf.Created.Time.Equal(epoch) {
			t.Errorf("%s: created %v, want %v", platform, cf.Created.Time, epoch)
		}
	}

	// The layer: exactly these entries, root-owned, with fixed times.
	amd64 := images["linux/amd64"]
	files := layerFiles(t, amd64)
	wantModes := map[string]int64{
		"etc/":                              0o755,
		"etc/group":                         0o644,
		"etc/passwd":                        0o644,
		"etc/ssl/":                          0o755,
		"etc/ssl/certs/":                    0o755,
		"etc/ssl/certs/ca-certificates.crt": 0o644,
		"postwarden":                        0o755,
	}
	for name, f := range files {
		want, ok := wantModes[name]
		if !ok {
			t.Errorf("unexpected layer entry %s", name)
			continue
		}
		if f.hdr.Mode != want || f.hdr.Uid != 0 || f.hdr.Gid != 0 || !f.hdr.ModTime.Equal(epoch) {
			t.Errorf("%s: mode %o uid %d gid %d mtime %v; want mode %o, root, %v", name, f.hdr.Mode, f.hdr.Uid, f.hdr.Gid, f.hdr.ModTime, want, epoch)
		}
	}
	for name := range wantModes {
		if _, ok := files[name]; !ok {
			t.Errorf("layer has no %s", name)
		}
	}
	if bin, _ := os.ReadFile(amd64Bin); !bytes.Equal(files["postwarden"].data, bin) {
		t.Error("/postwarden is not the amd64 binary")
	}
	if !strings.Contains(string(files["etc/passwd"].data), "nonroot:x:65532:65532:") ||
		!strings.Contains(string(files["etc/group"].data), "nonroot:x:65532:") {
		t.Error("/etc/passwd or /etc/group does not name nonroot 65532")
	}

	// The tarball holds the amd64 image under the tag: the same config and layer.
	tag, err := name.NewTag(testTag)
	if err != nil {
		t.Fatal(err)
	}
	fromTar, err := tarball.ImageFromPath(tarFile, &tag)
	if err != nil {
		t.Fatal(err)
	}
	gotConfig, err := fromTar.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	wantConfig, err := amd64.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	if gotConfig != wantConfig {
		t.Errorf("tarball config %s, want the amd64 config %s", gotConfig, wantConfig)
	}
}

func TestBuildIsReproducible(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1767225600")
	digests := func() (v1.Hash, [32]byte) {
		layoutDir, tarFile, _ := build(t, t.TempDir())
		outer, err := layout.ImageIndexFromPath(layoutDir)
		if err != nil {
			t.Fatal(err)
		}
		m, err := outer.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		tarBytes, err := os.ReadFile(tarFile)
		if err != nil {
			t.Fatal(err)
		}
		return m.Manifests[0].Digest, sha256.Sum256(tarBytes)
	}
	index1, tar1 := digests()
	index2, tar2 := digests()
	if index1 != index2 {
		t.Errorf("index digests differ: %s and %s", index1, index2)
	}
	if tar1 != tar2 {
		t.Error("the two tarballs differ")
	}

	t.Setenv("SOURCE_DATE_EPOCH", "1767225601")
	if index3, _ := digests(); index3 == index1 {
		t.Error("another SOURCE_DATE_EPOCH gave the same digest")
	}
}

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
