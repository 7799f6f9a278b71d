package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// nonroot is the user and group the image runs as, the same number distroless uses, so
// files and volumes prepared for distroless images work unchanged.
const nonroot = 65532

// passwd and group name root, nobody and nonroot. Homes are "/" because the image has no
// other directory a user could own.
const (
	passwd = "root:x:0:0:root:/:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/:/sbin/nologin\n"
	group = "root:x:0:\n" +
		"nobody:x:65534:\n" +
		"nonroot:x:65532:\n"
)

// buildImage builds one platform's image: the layer, then the config.
func buildImage(o *options, b binary) (v1.Image, error) {
	layer, err := buildLayer(o, b.file)
	if err != nil {
		return nil, err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: o.created},
			CreatedBy: "go run ./hack/image",
			Comment:   "postwarden, CA bundle, /etc/passwd and /etc/group",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("adding the layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS = b.platform.OS
	cf.Architecture = b.platform.Architecture
	cf.Variant = b.platform.Variant
	cf.Created = v1.Time{Time: o.created}
	cf.Config = v1.Config{
		Entrypoint: []string{o.path},
		Cmd:        o.cmd,
		User:       fmt.Sprintf("%d:%d", nonroot, nonroot),
		WorkingDir: "/",
		Env:        []string{"PATH=" + path.Dir(o.path)},
		Labels:     o.labels,
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("setting the config: %w", err)
	}
	return img, nil
}

// layerFile is one entry of the layer.
type layerFile struct {
	path string // absolute path in the image
	mode int64
	data []byte // nil for a directory
}

// buildLayer lays out the image's files in one tar, in sorted order with fixed owners
// and times, so the same files give the same digest.
func buildLayer(o *options, binaryFile string) (v1.Layer, error) {
	bin, err := os.ReadFile(binaryFile)
	if err != nil {
		return nil, err
	}
	files := []layerFile{
		{path: o.path, mode: 0o755, data: bin},
		{path: "/etc/passwd", mode: 0o644, data: []byte(passwd)},
		{path: "/etc/group", mode: 0o644, data: []byte(group)},
	}
	if o.caBundle != "" {
		ca, err := os.ReadFile(o.caBundle)
		if err != nil {
			return nil, fmt.Errorf("reading -ca-bundle: %w", err)
		}
		files = append(files, layerFile{path: "/etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: ca})
	}
	// Every parent directory gets an entry of its own, so its owner and mode are ours
	// rather than whatever the runtime picks.
	dirs := map[string]bool{}
	for _, f := range files {
		for d := path.Dir(f.path); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for d := range dirs {
		files = append(files, layerFile{path: d, mode: 0o755})
	}
	// A parent is a prefix of its children, so sorting puts it first.
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{
			Name:    strings.TrimPrefix(f.path, "/"),
			Mode:    f.mode,
			ModTime: o.epoch,
			Format:  tar.FormatPAX,
		}
		if f.data == nil {
			hdr.Typeflag, hdr.Name = tar.TypeDir, hdr.Name+"/"
		} else {
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("adding %s to the layer: %w", f.path, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("adding %s to the layer: %w", f.path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("closing the layer: %w", err)
	}
	layerTar := buf.Bytes()
	return tarball.LayerFromOpener(
		func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar)), nil },
		tarball.WithMediaType(types.OCILayer),
		// The default level: the best one saves under 1% of a Go binary for three times the CPU.
		tarball.WithCompressionLevel(gzip.DefaultCompression),
		// The digest, the layout and the tarball each read the compressed layer: gzip once.
		tarball.WithCompressedCaching,
	)
}

// buildIndex puts the platform images in one OCI image index, annotated with the labels
// so registries that show an index's description (ghcr.io) have one.
func buildIndex(o *options, images []platformImage) (v1.ImageIndex, error) {
	adds := make([]mutate.IndexAddendum, 0, len(images))
	for _, pi := range images {
		p := pi.platform
		adds = append(adds, mutate.IndexAddendum{Add: pi.image, Descriptor: v1.Descriptor{Platform: &p}})
	}
	index := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	annotated, ok := mutate.Annotations(index, o.labels).(v1.ImageIndex)
	if !ok {
		return nil, errors.New("annotating the image index: not an index")
	}
	return annotated, nil
}
