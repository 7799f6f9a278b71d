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
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// nonroot is the user and group the image runs as, the same number distroless uses, so
// files and volumes prepared for distroless images work unchanged.
const nonroot = 65532

// Annotation keys that tools read from the OCI layout's index.json to name the image:
// skopeo and podman read the OCI one, containerd (ctr images import) prefers its own.
const (
	annotationRefName        = "org.opencontainers.image.ref.name"
	annotationContainerdName = "io.containerd.image.name"
)

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

// parseFlags parses and checks the command line, so that every mistake is reported
// before anything is built.
func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	var binaries, cmd, labels repeated
	fs.Var(&binaries, "binary", "os/arch=path of a static binary, one per platform (repeatable), e.g. linux/arm64=bin/linux-arm64/postwarden")
	imagePath := fs.String("path", "/postwarden", "absolute path of the binary in the image; the entrypoint")
	caBundle := fs.String("ca-bundle", "/etc/ssl/certs/ca-certificates.crt", `CA bundle copied to /etc/ssl/certs/ca-certificates.crt; "" for none`)
	fs.Var(&cmd, "cmd", "an argument of the image's Cmd (repeatable, in order)")
	fs.Var(&labels, "label", "key=value label on the image config and the index (repeatable); overrides the standard labels")
	version := fs.String("version", "", "org.opencontainers.image.version")
	revision := fs.String("revision", "", "org.opencontainers.image.revision: the git commit")
	source := fs.String("source", "https://github.com/postwarden/postwarden", "org.opencontainers.image.source")
	title := fs.String("title", "postwarden", "org.opencontainers.image.title")
	description := fs.String("description", "Postwarden: a Kubernetes operator and SMTP relay in one binary", "org.opencontainers.image.description")
	licenses := fs.String("licenses", "Apache-2.0", "org.opencontainers.image.licenses (SPDX expression)")
	created := fs.String("created", "", "creation time, RFC 3339; default SOURCE_DATE_EPOCH")
	tag := fs.String("tag", "", "fully qualified image reference, e.g. ghcr.io/postwarden/postwarden:v0.1.0; names the OCI layout's image and the -tar image")
	ociLayout := fs.String("oci-layout", "", "write an OCI image layout with an index of every platform to this directory")
	tarFile := fs.String("tar", "", "write a docker-archive tarball of one platform (-tar-platform) to this file, for docker/podman load and ctr import")
	tarPlatform := fs.String("tar-platform", "linux/amd64", "the platform -tar writes")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	o := &options{caBundle: *caBundle, cmd: cmd, ociLayout: *ociLayout, tarFile: *tarFile}
	if len(binaries) == 0 {
		return nil, errors.New("no -binary given: want at least one os/arch=path")
	}
	seen := map[string]bool{}
	for _, spec := range binaries {
		b, err := parseBinary(spec)
		if err != nil {
			return nil, err
		}
		if seen[b.platform.String()] {
			return nil, fmt.Errorf("-binary %q: platform %s given twice", spec, b.platform)
		}
		seen[b.platform.String()] = true
		o.binaries = append(o.binaries, b)
	}

	o.path = path.Clean(*imagePath)
	if !path.IsAbs(*imagePath) || o.path == "/" || strings.HasPrefix(o.path, "/etc/") {
		return nil, fmt.Errorf("-path %q: want an absolute file path outside /etc", *imagePath)
	}
	if o.caBundle != "" {
		if err := checkRegular(o.caBundle); err != nil {
			return nil, fmt.Errorf("-ca-bundle: %w", err)
		}
	}

	var err error
	if o.epoch, err = sourceDateEpoch(); err != nil {
		return nil, err
	}
	o.created = o.epoch
	if *created != "" {
		if o.created, err = time.Parse(time.RFC3339, *created); err != nil {
			return nil, fmt.Errorf("-created %q: want RFC 3339, like 2026-01-02T15:04:05Z: %w", *created, err)
		}
		o.created = o.created.UTC()
	}

	o.labels = map[string]string{
		"org.opencontainers.image.version":     *version,
		"org.opencontainers.image.revision":    *revision,
		"org.opencontainers.image.source":      *source,
		"org.opencontainers.image.title":       *title,
		"org.opencontainers.image.description": *description,
		"org.opencontainers.image.licenses":    *licenses,
	}
	// The epoch says nothing about when the image was made, so it is no creation label.
	if !o.created.Equal(time.Unix(0, 0)) {
		o.labels["org.opencontainers.image.created"] = o.created.Format(time.RFC3339)
	}
	for k, v := range o.labels {
		if v == "" {
			delete(o.labels, k)
		}
	}
	userLabels := map[string]bool{}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || !labelKey.MatchString(k) {
			return nil, fmt.Errorf("-label %q: want key=value with a key of letters, digits and . _ - /", l)
		}
		if userLabels[k] {
			return nil, fmt.Errorf("-label %q: key %s given twice", l, k)
		}
		userLabels[k] = true
		o.labels[k] = v
	}

	if *tag != "" {
		// Strict: no registry or tag is filled in, so every tool names the image alike.
		t, err := name.NewTag(*tag, name.StrictValidation)
		if err != nil {
			return nil, fmt.Errorf("-tag %q: want registry/repository:tag: %w", *tag, err)
		}
		o.tag = &t
	}
	if o.tarFile != "" {
		if *tag == "" {
			return nil, errors.New("-tar needs -tag: docker load names the image by it")
		}
		p, err := parsePlatform(*tarPlatform)
		if err != nil {
			return nil, fmt.Errorf("-tar-platform: %w", err)
		}
		o.tarPlatform = *p
		if !slices.ContainsFunc(o.binaries, func(b binary) bool { return matches(b.platform, o.tarPlatform) }) {
			return nil, fmt.Errorf("-tar-platform %s: no -binary for that platform", o.tarPlatform)
		}
	}
	if o.ociLayout == "" && o.tarFile == "" {
		return nil, errors.New("no output: give -oci-layout DIR, -tar FILE or both")
	}
	return o, nil
}

// labelKey is what we accept as a label key: the characters of reverse-DNS keys like
// org.opencontainers.image.title, so a typo such as "k = v" is caught.
var labelKey = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]*$`)

// platformPart is one part of os/arch/variant, as Go and OCI spell them (linux, arm64, v8).
var platformPart = regexp.MustCompile(`^[a-z0-9_]+$`)

// parsePlatform parses os/arch or os/arch/variant. arm64 gets the variant v8 when none is
// given, as the official images label it, so a client asking for linux/arm64/v8 finds it.
func parsePlatform(s string) (*v1.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return nil, fmt.Errorf("platform %q: want os/arch or os/arch/variant, like linux/amd64", s)
	}
	for _, p := range parts {
		if !platformPart.MatchString(p) {
			return nil, fmt.Errorf("platform %q: want os/arch or os/arch/variant, like linux/amd64", s)
		}
	}
	p := &v1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	} else if p.Architecture == "arm64" {
		p.Variant = "v8"
	}
	return p, nil
}

// parseBinary parses a -binary flag and checks that the file can run in the image.
func parseBinary(spec string) (binary, error) {
	plat, file, ok := strings.Cut(spec, "=")
	if !ok || file == "" {
		return binary{}, fmt.Errorf("-binary %q: want os/arch=path", spec)
	}
	p, err := parsePlatform(plat)
	if err != nil {
		return binary{}, fmt.Errorf("-binary %q: %w", spec, err)
	}
	if err := checkBinary(*p, file); err != nil {
		return binary{}, fmt.Errorf("-binary %q: %w", spec, err)
	}
	return binary{platform: *p, file: file}, nil
}

// elfMachines maps GOARCH to the ELF machine its binaries declare.
var elfMachines = map[string]elf.Machine{
	"amd64":   elf.EM_X86_64,
	"arm64":   elf.EM_AARCH64,
	"arm":     elf.EM_ARM,
	"386":     elf.EM_386,
	"ppc64le": elf.EM_PPC64,
	"s390x":   elf.EM_S390,
	"riscv64": elf.EM_RISCV,
}

// checkBinary catches the two mistakes that give an image which cannot start: a binary for
// another architecture, and a dynamically linked one (the image has no libc or loader).
func checkBinary(p v1.Platform, file string) error {
	if err := checkRegular(file); err != nil {
		return err
	}
	if p.OS != "linux" {
		return nil
	}
	f, err := elf.Open(file)
	if err != nil {
		return fmt.Errorf("%s is not a Linux executable: %w", file, err)
	}
	defer f.Close()
	if want, ok := elfMachines[p.Architecture]; ok && f.Machine != want {
		return fmt.Errorf("%s is built for %s, not %s", file, f.Machine, p.Architecture)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked and the image has no libc: build it with CGO_ENABLED=0", file)
		}
	}
	return nil
}

func checkRegular(file string) error {
	fi, err := os.Stat(file)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", file)
	}
	return nil
}

// sourceDateEpoch reads SOURCE_DATE_EPOCH (reproducible-builds.org), or gives the Unix
// epoch when it is unset.
func sourceDateEpoch() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil || sec < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: want seconds since 1970", s)
	}
	return time.Unix(sec, 0).UTC(), nil
}

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

// writeOCILayout writes the index to a fresh OCI layout in a temporary directory beside
// dir and then swaps it in, so dir never holds blobs of an older build or half a build.
// An existing dir is replaced only when it is an OCI layout.
func writeOCILayout(dir string, index v1.ImageIndex, tag *name.Tag) error {
	if fi, err := os.Lstat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s exists and is not a directory; not replacing it", dir)
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		if len(entries) > 0 {
			if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
				return fmt.Errorf("%s exists and is not an OCI layout; not replacing it", dir)
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	lp, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return err
	}
	var opts []layout.Option
	if tag != nil {
		opts = append(opts, layout.WithAnnotations(map[string]string{
			annotationRefName:        tag.String(),
			annotationContainerdName: tag.String(),
		}))
	}
	if err := lp.AppendIndex(index, opts...); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// writeTarball writes one image as a docker-archive, through a temporary file so a failed
// write leaves no truncated tarball behind.
func writeTarball(file string, tag *name.Tag, img v1.Image) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := tarball.Write(*tag, img, f); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), file)
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

// repeated is a flag that may be given many times.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, " ") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }
