// Command crdref writes the CRD reference (docs/crd-reference.md) from the generated CRDs
// in config/crd/bases, so that the reference says exactly what the API server enforces
// and never drifts from it. `make manifests` runs it after controller-gen, and
// `make verify-gen` fails when the committed reference is stale.
//
//	go run ./hack/crdref -crds config/crd/bases -out docs/crd-reference.md
//
// The output depends only on the CRD files: kinds in a fixed order, fields sorted by name.
// A schema keyword the generator does not know is an error, so nothing is left out
// silently.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"sigs.k8s.io/yaml"
)

func main() {
	crds := flag.String("crds", "config/crd/bases", "folder of the CustomResourceDefinition YAML files")
	out := flag.String("out", "docs/crd-reference.md", "markdown file to write; - for standard output")
	flag.Parse()
	doc, err := generate(*crds)
	if err == nil {
		if *out == "-" {
			_, err = os.Stdout.Write(doc)
		} else {
			err = os.WriteFile(*out, doc, 0o644)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "crdref:", err)
		os.Exit(1)
	}
}

// kindOrder is the order of the README and of a user's day: the domain, its logins, then
// the policies. Kinds not listed follow in alphabetical order.
var kindOrder = []string{"MailDomain", "SMTPCredential", "DiscoveryPolicy", "TLSDeliveryPolicy"}

type kind struct {
	crd    crd
	schema *schema
}

func generate(dir string) ([]byte, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no CRD files in %s", dir)
	}
	var kinds []kind
	for _, f := range files {
		k, err := load(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		kinds = append(kinds, k)
	}
	rank := func(name string) int {
		if i := slices.Index(kindOrder, name); i >= 0 {
			return i
		}
		return len(kindOrder)
	}
	sort.Slice(kinds, func(i, j int) bool {
		a, b := kinds[i].crd.Spec.Names.Kind, kinds[j].crd.Spec.Names.Kind
		if rank(a) != rank(b) {
			return rank(a) < rank(b)
		}
		return a < b
	})

	var w bytes.Buffer
	header(&w, kinds)
	for _, k := range kinds {
		writeKind(&w, k)
	}
	return w.Bytes(), nil
}

func load(path string) (kind, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return kind{}, err
	}
	var c crd
	if err := yaml.Unmarshal(data, &c); err != nil {
		return kind{}, err
	}
	if c.Kind != "CustomResourceDefinition" {
		return kind{}, fmt.Errorf("kind %q is not CustomResourceDefinition", c.Kind)
	}
	if len(c.Spec.Versions) != 1 {
		return kind{}, fmt.Errorf("%d versions: the reference knows how to show one", len(c.Spec.Versions))
	}
	dec := json.NewDecoder(bytes.NewReader(c.Spec.Versions[0].Schema.OpenAPIV3Schema))
	dec.DisallowUnknownFields()
	var s schema
	if err := dec.Decode(&s); err != nil {
		return kind{}, fmt.Errorf("schema: %w", err)
	}
	if s.Properties["spec"] == nil {
		return kind{}, errors.New("schema has no spec")
	}
	return kind{crd: c, schema: &s}, nil
}
