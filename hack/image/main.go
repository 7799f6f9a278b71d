// Command image builds the postwarden container image offline: no Docker daemon, no base
// image pulled from a registry. Each platform image is FROM scratch with one layer that
// holds the static binary, a CA bundle for outbound TLS, and an /etc/passwd and /etc/group
// that name the nonroot user, so the image runs with a read-only root file system and
// tools show a user name. `make image` runs it.
//
//	go run ./hack/image \
//	  -binary linux/amd64=bin/linux-amd64/postwarden \
//	  -binary linux/arm64=bin/linux-arm64/postwarden \
//	  -version v0.1.0 -revision "$(git rev-parse HEAD)" \
//	  -tag ghcr.io/postwarden/postwarden:v0.1.0 \
//	  -oci-layout bin/image/postwarden-oci -tar bin/image/postwarden-v0.1.0-linux-amd64.tar
//
// The OCI layout names its index with the -tag reference (org.opencontainers.image.ref.name
// and io.containerd.image.name), so both of these find it:
//
//	skopeo copy oci:bin/image/postwarden-oci:ghcr.io/postwarden/postwarden:v0.1.0 docker://...
//	tar -C bin/image/postwarden-oci -cf - . | ctr -n k8s.io images import --all-platforms -
//
// The build is reproducible: file times, the config's creation time and the history come
// from SOURCE_DATE_EPOCH (or the Unix epoch), and files are written in sorted order, so
// the same inputs give the same digests.
//
// go-containerregistry writes every image format (manifests, configs, the OCI layout, the
// docker-archive tarball); this command only lays out the files of the one layer.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

// options is the parsed command line.
type options struct {
	binaries    []binary
	path        string
	caBundle    string
	cmd         []string
	labels      map[string]string
	tag         *name.Tag // nil when -tag is not given
	ociLayout   string
	tarFile     string
	tarPlatform v1.Platform
	epoch       time.Time // file times in the layer
	created     time.Time // the config's and the history's creation time
}

// binary is one -binary flag: the executable for one platform.
type binary struct {
	platform v1.Platform
	file     string
}

// platformImage is one built platform image.
type platformImage struct {
	platform v1.Platform
	image    v1.Image
}

func run(args []string, stdout io.Writer) error {
	opts, err := parseFlags(args)
	if err != nil {
		return err
	}
	images := make([]platformImage, 0, len(opts.binaries))
	for _, b := range opts.binaries {
		img, err := buildImage(opts, b)
		if err != nil {
			return fmt.Errorf("building %s: %w", b.platform, err)
		}
		images = append(images, platformImage{b.platform, img})
	}
	index, err := buildIndex(opts, images)
	if err != nil {
		return err
	}

	if opts.ociLayout != "" {
		if err := writeOCILayout(opts.ociLayout, index, opts.tag); err != nil {
			return fmt.Errorf("writing OCI layout %s: %w", opts.ociLayout, err)
		}
	}
	if opts.tarFile != "" {
		i := slices.IndexFunc(images, func(pi platformImage) bool { return matches(pi.platform, opts.tarPlatform) })
		if err := writeTarball(opts.tarFile, opts.tag, images[i].image); err != nil {
			return fmt.Errorf("writing %s: %w", opts.tarFile, err)
		}
	}
	return report(stdout, opts, index, images)
}

// matches says whether an image built for have serves a request for want; a want
// without a variant matches any variant.
func matches(have, want v1.Platform) bool {
	return have.OS == want.OS && have.Architecture == want.Architecture &&
		(want.Variant == "" || have.Variant == want.Variant)
}

// report prints the digests and sizes, the names by which an image is pinned.
func report(w io.Writer, o *options, index v1.ImageIndex, images []platformImage) error {
	for _, pi := range images {
		d, err := pi.image.Digest()
		if err != nil {
			return fmt.Errorf("digest of %s: %w", pi.platform, err)
		}
		m, err := pi.image.Manifest()
		if err != nil {
			return fmt.Errorf("manifest of %s: %w", pi.platform, err)
		}
		size := m.Config.Size
		for _, l := range m.Layers {
			size += l.Size
		}
		fmt.Fprintf(w, "%-16s %s  %.1f MiB compressed\n", pi.platform, d, float64(size)/(1<<20))
	}
	d, err := index.Digest()
	if err != nil {
		return fmt.Errorf("digest of the index: %w", err)
	}
	fmt.Fprintf(w, "%-16s %s\n", "index", d)
	if o.ociLayout != "" {
		fmt.Fprintf(w, "wrote %s (OCI layout, %d platforms)\n", o.ociLayout, len(images))
	}
	if o.tarFile != "" {
		fmt.Fprintf(w, "wrote %s (%s, %s)\n", o.tarFile, o.tarPlatform, o.tag)
	}
	return nil
}
