package main

import (
	"bytes"
	"crypto/sha256"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

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
