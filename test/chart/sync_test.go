package chart

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/postwarden/postwarden/test/testenv"
)

// The chart's generated parts are byte-for-byte copies of what `make manifests` writes
// into config/, so the chart and config/ never drift.
func TestChartCopiesAreFresh(t *testing.T) {
	root := testenv.RepoRoot()
	const fix = "stale: run hack/sync-chart.sh (after make manifests) and commit"

	t.Run("charts/postwarden/crds holds exactly the CRDs of config/crd/bases", func(t *testing.T) {
		want := yamlFiles(t, filepath.Join(root, "config", "crd", "bases"))
		got := yamlFiles(t, filepath.Join(chartDir, "crds"))
		if len(want) == 0 {
			t.Fatal("config/crd/bases holds no CRDs")
		}
		for name, content := range want {
			if c, ok := got[name]; !ok {
				t.Errorf("charts/postwarden/crds/%s is missing: %s", name, fix)
			} else if !bytes.Equal(c, content) {
				t.Errorf("charts/postwarden/crds/%s differs from config/crd/bases: %s", name, fix)
			}
		}
		for name := range got {
			if _, ok := want[name]; !ok {
				t.Errorf("charts/postwarden/crds/%s is not in config/crd/bases: %s", name, fix)
			}
		}
	})
	t.Run("the chart's operator RBAC rules are config/rbac/role.yaml", func(t *testing.T) {
		want := read(t, filepath.Join(root, "config", "rbac", "role.yaml"))
		got := read(t, filepath.Join(chartDir, "files", "operator-rbac.yaml"))
		if !bytes.Equal(got, want) {
			t.Errorf("charts/postwarden/files/operator-rbac.yaml differs from config/rbac/role.yaml: %s", fix)
		}
	})
}

func yamlFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	out := make(map[string][]byte, len(names))
	for _, n := range names {
		out[filepath.Base(n)] = read(t, n)
	}
	return out
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
