// Package chart tests the Helm chart charts/postwarden and the kustomize base
// config/default: it renders the chart with Helm's engine for several value sets,
// applies every object to a real kube-apiserver with a server-side dry run, checks the
// properties that keep the relay safe, and checks that the chart's generated parts (CRDs,
// operator RBAC) and config/default say the same as their sources.
package chart

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/postwarden/postwarden/test/testenv"
)

var (
	env *testenv.Env
	dyn *dynamic.DynamicClient
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	if env, err = testenv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}()
	if dyn, err = dynamic.NewForConfig(env.Config); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := installServiceMonitorCRD(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

var namespaces atomic.Int64

// newNamespace creates, for real, a namespace of its own for one test: a dry run of a
// namespaced object needs its namespace to exist.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("chart-test-%d", namespaces.Add(1))}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return ns.Name
}

// dryRunApply sends obj to the API server as a server-side apply with dryRun=All and
// strict field validation: the server runs defaulting, validation and admission, and
// refuses fields its schema does not declare, but stores nothing.
func dryRunApply(ctx context.Context, obj *unstructured.Unstructured) error {
	return serverSideApply(ctx, obj, true)
}

// serverSideApply applies obj with strict field validation, stored or as a dry run.
func serverSideApply(ctx context.Context, obj *unstructured.Unstructured, dryRun bool) error {
	gvk := obj.GroupVersionKind()
	mapping, err := env.Client.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("mapping %s: %w", gvk, err)
	}
	data, err := obj.MarshalJSON()
	if err != nil {
		return err
	}
	var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
	if obj.GetNamespace() != "" {
		ri = dyn.Resource(mapping.Resource).Namespace(obj.GetNamespace())
	}
	force := true
	opts := metav1.PatchOptions{Force: &force, FieldManager: "chart-test", FieldValidation: metav1.FieldValidationStrict}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err = ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, opts)
	return err
}

// installServiceMonitorCRD installs a small ServiceMonitor CRD: envtest has no
// Prometheus Operator. Its schema declares the fields the chart sets, with their types,
// so a dry run of the chart's ServiceMonitor still checks them strictly.
func installServiceMonitorCRD(ctx context.Context) error {
	crd, err := decode(serviceMonitorCRD)
	if err != nil {
		return err
	}
	if err := env.Client.Create(ctx, crd); err != nil {
		return fmt.Errorf("creating the ServiceMonitor CRD: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(crd.GroupVersionKind())
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(crd), got); err != nil {
			return err
		}
		conditions, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, c := range conditions {
			if c, ok := c.(map[string]any); ok && c["type"] == "Established" && c["status"] == "True" {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("the ServiceMonitor CRD was not established in time")
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}
}

const serviceMonitorCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
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
              required: [endpoints, selector]
              properties:
                endpoints:
                  type: array
                  items:
                    type: object
                    properties:
                      port: {type: string}
                      path: {type: string}
                      scheme: {type: string, enum: [http, https]}
                      interval: {type: string, pattern: '^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                      scrapeTimeout: {type: string, pattern: '^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                namespaceSelector:
                  type: object
                  properties:
                    any: {type: boolean}
                    matchNames: {type: array, items: {type: string}}
                selector:
                  type: object
                  properties:
                    matchLabels: {type: object, additionalProperties: {type: string}}
                    matchExpressions: {type: array, items: {type: object, x-kubernetes-preserve-unknown-fields: true}}
`
