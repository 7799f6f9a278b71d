package chart

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// workload returns the rendered object of that kind, or nil.
func workload(r *rendered, kind string) *unstructured.Unstructured {
	for _, o := range r.Objects {
		if o.GetKind() == kind {
			return o
		}
	}
	return nil
}

// container returns the named container of a workload.
func container(t *testing.T, w *unstructured.Unstructured, name string) map[string]any {
	t.Helper()
	for _, c := range nested[[]any](t, w, "spec", "template", "spec", "containers") {
		if mustMap(c)["name"] == name {
			return mustMap(c)
		}
	}
	t.Fatalf("%s %s has no container %s", w.GetKind(), w.GetName(), name)
	return nil
}

// flagValue returns the value of --name=value in the container's args, failing the
// test when the flag is absent.
func flagValue(t *testing.T, c map[string]any, name string) string {
	t.Helper()
	for _, a := range strSlice(c["args"]) {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	t.Fatalf("container %s has no %s=: %v", c["name"], name, c["args"])
	return ""
}

// servicePort returns the port of a Service that targets the named container port, or 0.
func servicePort(t *testing.T, svc *unstructured.Unstructured, target string) int64 {
	t.Helper()
	for _, p := range nested[[]any](t, svc, "spec", "ports") {
		if mustMap(p)["targetPort"] == target {
			n, _ := mustMap(p)["port"].(int64)
			return n
		}
	}
	return 0
}

// containerPort returns the number of the named port, or 0.
func containerPort(c map[string]any, name string) int64 {
	for _, p := range nestedIn[[]any](c, "ports") {
		if mustMap(p)["name"] == name {
			n, _ := mustMap(p)["containerPort"].(int64)
			return n
		}
	}
	return 0
}

// downward returns the fieldPath an env var takes from the downward API, or "".
func downward(c map[string]any, name string) string {
	for _, e := range nestedIn[[]any](c, "env") {
		if mustMap(e)["name"] == name {
			return nestedIn[string](mustMap(e), "valueFrom", "fieldRef", "fieldPath")
		}
	}
	return ""
}

func duration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("parsing duration %q: %v", s, err)
	}
	return d
}

// namespaced reports whether objects of kind live in a namespace.
func namespaced(kind string) bool {
	switch kind {
	case "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace":
		return false
	}
	return true
}
