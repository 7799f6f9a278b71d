package crd

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/postwarden/postwarden/test/testenv"
)

// config/default is what users without Helm apply; the API server must accept all of it.
func TestConfigDefaultApplies(t *testing.T) {
	dir := filepath.Join(testenv.RepoRoot(), "config", "default")
	rendered, err := env.Kubectl(nil, "kustomize", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"kind: CustomResourceDefinition", "kind: ClusterRole", "kind: Deployment", "kind: ServiceAccount"} {
		if !strings.Contains(rendered, kind) {
			t.Errorf("config/default renders no %s", kind)
		}
	}
	// A real apply: a server-side dry run of namespaced objects would fail on the
	// namespace that the same apply creates.
	if _, err := env.Kubectl([]byte(rendered), "apply", "--server-side", "--field-manager=crd-test", "-f", "-"); err != nil {
		t.Fatal(err)
	}
}
