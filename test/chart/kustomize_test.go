package chart

import (
	"flag"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/postwarden/postwarden/controllers"
	"github.com/postwarden/postwarden/test/testenv"
)

// kustomizeDefault renders config/default with kubectl's kustomize.
func kustomizeDefault(t *testing.T) *rendered {
	t.Helper()
	out, err := env.Kubectl(nil, "kustomize", filepath.Join(testenv.RepoRoot(), "config", "default"))
	if err != nil {
		t.Fatal(err)
	}
	r := &rendered{}
	for _, doc := range strings.Split(out, "\n---\n") {
		obj, err := decode(doc)
		if err != nil {
			t.Fatalf("decoding kustomize output: %v", err)
		}
		if obj != nil {
			r.Objects = append(r.Objects, obj)
		}
	}
	return r
}

// config/default, for users without Helm, deploys the same as the chart with its
// default values, released as "postwarden" into postwarden-system: the same relays,
// Services, RBAC and security settings, and passes the same safety checks.
func TestConfigDefaultMatchesChart(t *testing.T) {
	const ns = "postwarden-system"
	kust := kustomizeDefault(t)
	helm := mustRender(t, ns, nil)

	t.Run("config/default passes the chart's safety checks", func(t *testing.T) {
		checkSafety(t, kust, ns)
	})

	same := func(t *testing.T, what string, k, h any) {
		t.Helper()
		if !reflect.DeepEqual(k, h) {
			t.Errorf("%s differs:\nconfig/default: %v\nchart:          %v", what, k, h)
		}
	}
	for _, name := range []string{"postwarden-relay", "postwarden-relay-headless"} {
		t.Run("Service "+name+" is the same", func(t *testing.T) {
			k, h := kust.find(t, "Service", name), helm.find(t, "Service", name)
			for _, field := range []string{"type", "externalTrafficPolicy", "ports", "clusterIP"} {
				same(t, "spec."+field, nestedIn[any](k.Object, "spec", field), nestedIn[any](h.Object, "spec", field))
			}
		})
	}
	t.Run("the relay StatefulSet is the same", func(t *testing.T) {
		k, h := kust.find(t, "StatefulSet", "postwarden-relay"), helm.find(t, "StatefulSet", "postwarden-relay")
		for _, path := range [][]string{
			{"spec", "serviceName"}, {"spec", "replicas"}, {"spec", "podManagementPolicy"},
			{"spec", "persistentVolumeClaimRetentionPolicy"},
			{"spec", "template", "spec", "serviceAccountName"},
			{"spec", "template", "spec", "securityContext"},
			{"spec", "template", "spec", "terminationGracePeriodSeconds"},
		} {
			same(t, strings.Join(path, "."), nestedIn[any](k.Object, path...), nestedIn[any](h.Object, path...))
		}
		kc, hc := container(t, k, "relay"), container(t, h, "relay")
		for _, field := range []string{"ports", "env", "livenessProbe", "readinessProbe", "securityContext", "volumeMounts", "resources"} {
			same(t, "relay container "+field, kc[field], hc[field])
		}
		// The chart also states three relay defaults explicitly; the rest must be equal.
		chartOnly := map[string]string{"--lease-duration": "30s", "--log-level": "info", "--log-format": "json"}
		same(t, "relay args", args(kc, nil), args(hc, chartOnly))
		claim := func(o *unstructured.Unstructured) any {
			return nestedIn[any](nestedIn[[]any](o.Object, "spec", "volumeClaimTemplates")[0].(map[string]any), "spec")
		}
		same(t, "spool volume claim", claim(k), claim(h))
	})
	t.Run("the relay's Role and PodDisruptionBudget are the same", func(t *testing.T) {
		same(t, "relay Role rules", kust.find(t, "Role", "postwarden-relay").Object["rules"], helm.find(t, "Role", "postwarden-relay").Object["rules"])
		same(t, "relay PDB maxUnavailable", nestedIn[any](kust.find(t, "PodDisruptionBudget", "postwarden-relay").Object, "spec", "maxUnavailable"),
			nestedIn[any](helm.find(t, "PodDisruptionBudget", "postwarden-relay").Object, "spec", "maxUnavailable"))
	})
	t.Run("the operator has the same rules and writes the same config", func(t *testing.T) {
		for _, kind := range []string{"ClusterRole", "Role"} {
			same(t, "operator "+kind+" rules", kust.find(t, kind, "postwarden-operator").Object["rules"], helm.find(t, kind, "postwarden-operator").Object["rules"])
		}
		ko := operatorOptions(t, container(t, kust.find(t, "Deployment", "postwarden-operator"), "operator"))
		ho := operatorOptions(t, container(t, helm.find(t, "Deployment", "postwarden-operator"), "operator"))
		same(t, "operator config name", ko.ConfigName, ho.ConfigName)
		same(t, "operator namespace", ko.Namespace, ho.Namespace)
		same(t, "operator leader election", ko.LeaderElection, ho.LeaderElection)
	})
}

// args returns a container's flags as name → value, leaving out the flags in skip when
// they hold the given value.
func args(c map[string]any, skip map[string]string) map[string]string {
	out := map[string]string{}
	for _, a := range strSlice(c["args"]) {
		name, value, _ := strings.Cut(a, "=")
		if v, ok := skip[name]; ok && v == value {
			continue
		}
		out[name] = value
	}
	return out
}

// operatorOptions parses an operator container's arguments with the operator's own flag
// set, as `postwarden operator` does.
func operatorOptions(t *testing.T, c map[string]any) controllers.OperatorOptions {
	t.Helper()
	fs := flag.NewFlagSet("operator", flag.ContinueOnError)
	fs.SetOutput(discard{})
	var opts controllers.OperatorOptions
	opts.BindFlags(fs)
	(&zap.Options{}).BindFlags(fs)
	args := strSlice(c["args"])
	if len(args) == 0 || args[0] != "operator" {
		t.Fatalf("operator args %v do not start with the operator subcommand", args)
	}
	if err := fs.Parse(args[1:]); err != nil {
		t.Fatalf("the operator refuses its arguments %v: %v", args, err)
	}
	return opts
}
