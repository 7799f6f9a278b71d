package main

import (
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

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

// repeated is a flag that may be given many times.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, " ") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }
