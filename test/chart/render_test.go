package chart

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/postwarden/postwarden/test/testenv"
)

// chartDir is the chart under test.
var chartDir = filepath.Join(testenv.RepoRoot(), "charts", "postwarden")

// rendered is the output of one helm install, as helm would send it.
type rendered struct {
	// CRDs are the chart's crds/ folder, installed before everything else.
	CRDs []*unstructured.Unstructured
	// Objects are the templates' objects, in the order helm installs them.
	Objects []*unstructured.Unstructured
	// Notes is NOTES.txt.
	Notes string
}

// render renders the chart for a release named release in namespace, with values
// merged over values.yaml and checked against values.schema.json, like helm install.
func render(release, namespace string, values map[string]any) (*rendered, error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return nil, fmt.Errorf("loading the chart: %w", err)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = chartutil.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}
	top, err := chartutil.ToRenderValues(ch, values,
		chartutil.ReleaseOptions{Name: release, Namespace: namespace, IsInstall: true, Revision: 1}, caps)
	if err != nil {
		return nil, err
	}
	files, err := engine.Engine{Strict: true}.Render(ch, top)
	if err != nil {
		return nil, err
	}
	out := &rendered{}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if strings.HasSuffix(name, "NOTES.txt") {
			out.Notes = files[name]
		}
	}
	manifests := make(map[string]string)
	for name, content := range files {
		if strings.HasSuffix(name, ".yaml") {
			manifests[name] = content
		}
	}
	_, sorted, err := releaseutil.SortManifests(manifests, caps.APIVersions, releaseutil.InstallOrder)
	if err != nil {
		return nil, fmt.Errorf("sorting manifests: %w", err)
	}
	for _, m := range sorted {
		obj, err := decode(m.Content)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Name, err)
		}
		if obj != nil {
			out.Objects = append(out.Objects, obj)
		}
	}
	for _, crd := range ch.CRDObjects() {
		obj, err := decode(string(crd.File.Data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", crd.Filename, err)
		}
		out.CRDs = append(out.CRDs, obj)
	}
	return out, nil
}

// decode parses one YAML document into an object, with whole numbers as int64 like the
// API machinery; an empty document is nil.
func decode(doc string) (*unstructured.Unstructured, error) {
	js, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		return nil, err
	}
	if s := strings.TrimSpace(string(js)); s == "null" || s == "{}" {
		return nil, nil
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(js); err != nil {
		return nil, err
	}
	return obj, nil
}

// mustRender renders or fails the test.
func mustRender(t *testing.T, namespace string, values map[string]any) *rendered {
	t.Helper()
	r, err := render("postwarden", namespace, values)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// find returns the one object of that kind and name, or fails the test.
func (r *rendered) find(t *testing.T, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range r.Objects {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s rendered; have %v", kind, name, r.names())
	return nil
}

// has reports whether an object of that kind is rendered.
func (r *rendered) has(kind string) bool {
	return slices.ContainsFunc(r.Objects, func(o *unstructured.Unstructured) bool { return o.GetKind() == kind })
}

func (r *rendered) names() []string {
	var out []string
	for _, o := range r.Objects {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	return out
}
