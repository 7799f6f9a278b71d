package chart

import (
	"slices"
	"testing"
)

// checkPodSecurity checks every pod template: non-root, seccomp RuntimeDefault, read-only
// root filesystem, no privilege escalation, every capability dropped.
func checkPodSecurity(t *testing.T, r *rendered) {
	t.Helper()
	for _, kind := range []string{"Deployment", "StatefulSet"} {
		w := workload(r, kind)
		if w == nil {
			continue
		}
		pod := nested[map[string]any](t, w, "spec", "template", "spec")
		if nestedIn[bool](pod, "securityContext", "runAsNonRoot") != true {
			t.Errorf("%s: pod securityContext.runAsNonRoot is not true", kind)
		}
		if got := nestedIn[string](pod, "securityContext", "seccompProfile", "type"); got != "RuntimeDefault" {
			t.Errorf("%s: pod seccompProfile %q, want RuntimeDefault", kind, got)
		}
		for _, c := range nestedIn[[]any](pod, "containers") {
			c := mustMap(c)
			sc := nestedIn[map[string]any](c, "securityContext")
			if nestedIn[bool](sc, "readOnlyRootFilesystem") != true || nestedIn[bool](sc, "allowPrivilegeEscalation") != false ||
				nestedIn[bool](sc, "privileged") {
				t.Errorf("%s container %s: securityContext %v, want a read-only root and no privilege escalation", kind, c["name"], sc)
			}
			if _, set := sc["allowPrivilegeEscalation"]; !set {
				t.Errorf("%s container %s: allowPrivilegeEscalation is not set to false", kind, c["name"])
			}
			if drop := strSlice(nestedIn[[]any](sc, "capabilities", "drop")); !slices.Contains(drop, "ALL") || len(nestedIn[[]any](sc, "capabilities", "add")) > 0 {
				t.Errorf("%s container %s: capabilities %v, want ALL dropped and none added", kind, c["name"], sc["capabilities"])
			}
			uid, ok := sc["runAsUser"].(int64)
			if !ok {
				uid, ok = nestedIn[map[string]any](pod, "securityContext")["runAsUser"].(int64)
			}
			if !ok || uid == 0 {
				t.Errorf("%s container %s: runs as uid %d (set: %v), want a non-root uid", kind, c["name"], uid, ok)
			}
		}
	}
}

// checkSelectors checks that each Service and PodDisruptionBudget selects a workload's
// pods, and that the StatefulSet's governing Service is a rendered headless Service.
func checkSelectors(t *testing.T, r *rendered) {
	t.Helper()
	var podLabels []map[string]string
	for _, kind := range []string{"Deployment", "StatefulSet"} {
		if w := workload(r, kind); w != nil {
			labels := map[string]string{}
			for k, v := range nested[map[string]any](t, w, "spec", "template", "metadata", "labels") {
				labels[k], _ = v.(string)
			}
			if !matches(nested[map[string]any](t, w, "spec", "selector", "matchLabels"), labels) {
				t.Errorf("%s %s: its selector does not match its pod labels", kind, w.GetName())
			}
			podLabels = append(podLabels, labels)
		}
	}
	for _, o := range r.Objects {
		var selector map[string]any
		switch o.GetKind() {
		case "Service":
			selector = nested[map[string]any](t, o, "spec", "selector")
		case "PodDisruptionBudget":
			selector = nested[map[string]any](t, o, "spec", "selector", "matchLabels")
		default:
			continue
		}
		if !slices.ContainsFunc(podLabels, func(l map[string]string) bool { return matches(selector, l) }) {
			t.Errorf("%s %s selects no rendered pods: %v", o.GetKind(), o.GetName(), selector)
		}
	}
	sts := workload(r, "StatefulSet")
	headless := r.find(t, "Service", nested[string](t, sts, "spec", "serviceName"))
	if got := nested[string](t, headless, "spec", "clusterIP"); got != "None" {
		t.Errorf("the StatefulSet's service %s has clusterIP %q, want None", headless.GetName(), got)
	}
}
