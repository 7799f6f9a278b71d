package main

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const bases = "../../config/crd/bases"

// Every property of every CRD's spec and status has its own row, found by walking the
// CRD files as plain maps, independently of the generator's own types.
func TestEveryFieldHasARow(t *testing.T) {
	doc, err := generate(bases)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(bases, "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no CRDs found")
	}
	var paths []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var c map[string]any
		if err := yaml.Unmarshal(data, &c); err != nil {
			t.Fatal(err)
		}
		versions := c["spec"].(map[string]any)["versions"].([]any)
		root := versions[0].(map[string]any)["schema"].(map[string]any)["openAPIV3Schema"].(map[string]any)
		props := root["properties"].(map[string]any)
		for _, part := range []string{"spec", "status"} {
			if s, ok := props[part].(map[string]any); ok {
				paths = append(paths, walk(part, s)...)
			}
		}
	}
	if len(paths) < 50 {
		t.Fatalf("found only %d fields in the CRDs: the walk is broken", len(paths))
	}
	sort.Strings(paths)
	for _, p := range paths {
		if !bytes.Contains(doc, []byte("| `"+p+"` |")) {
			t.Errorf("no row for %s", p)
		}
	}
}

// walk lists the property paths under s, not descending into metav1.Conditions.
func walk(prefix string, s map[string]any) []string {
	var out []string
	props, _ := s["properties"].(map[string]any)
	for name, v := range props {
		p := v.(map[string]any)
		path := prefix + "." + name
		out = append(out, path)
		if name == "conditions" {
			continue
		}
		if items, ok := p["items"].(map[string]any); ok {
			out = append(out, walk(path+"[]", items)...)
		}
		out = append(out, walk(path, p)...)
	}
	return out
}

func TestOutputIsDeterministic(t *testing.T) {
	a, err := generate(bases)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		b, err := generate(bases)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatal("two runs gave different output")
		}
	}
}

// A schema keyword the generator does not render must stop it, not vanish from the docs.
func TestUnknownSchemaKeywordIsAnError(t *testing.T) {
	dir := t.TempDir()
	crd := `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: things.example.com
spec:
  group: example.com
  names: {kind: Thing, plural: things, singular: thing}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size:
                type: integer
                multipleOf: 2
`
	if err := os.WriteFile(filepath.Join(dir, "thing.yaml"), []byte(crd), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := generate(dir)
	if err == nil || !strings.Contains(err.Error(), "multipleOf") {
		t.Fatalf("want an error naming multipleOf, got %v", err)
	}
}

// Text from the CRDs cannot break a table row or turn into markup.
func TestCellEscaping(t *testing.T) {
	got := cell(text("a | b <name> *.example.org `x`"))
	want := `a \| b &lt;name> \*.example.org` + " \\`x\\`"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := code("a`b"); got != "``a`b``" {
		t.Fatalf("code with a backtick: %q", got)
	}
}
