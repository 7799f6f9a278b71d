package controllers_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/controllers"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testenv"
)

// A cluster without cert-manager: the operator says so on MailDomains and serves
// everything else.
func TestWithoutCertManager(t *testing.T) {
	bare := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(testenv.RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                controllers.Scheme,
	}
	cfg, err := bare.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bare.Stop() })
	c, err := client.New(cfg, client.Options{Scheme: controllers.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	for _, ns := range []string{operatorNS, "tenant"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	mgr, err := controllers.NewManager(cfg, operatorOptions())
	if err != nil {
		t.Fatalf("the manager must start without cert-manager: %v", err)
	}
	if err := controllers.SetupWithManager(mgr, operatorOptions()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})

	md := mailDomain("tenant", "main", "tenant.example", "a@tenant.example")
	md.Spec.SubmissionHostnames = []string{"smtp.tenant.example"}
	if err := c.Create(ctx, md); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the domain is accepted and reports CertManagerMissing", func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(md), md); err != nil {
			return err
		}
		if err := wantCondition(md.Status.Conditions, relayv1alpha1.ConditionAccepted, "True/"+relayv1alpha1.ReasonCompiled); err != nil {
			return err
		}
		return wantCondition(md.Status.Conditions, "CertificateReady", "False/"+relayv1alpha1.ReasonCertManagerMissing)
	})
	if !strings.Contains(logs.String(), "cert-manager's CRDs are not installed") {
		t.Error("no log line says that cert-manager is missing")
	}
	eventually(t, "the config is written", func() error {
		var list corev1.SecretList
		if err := c.List(ctx, &list, client.InNamespace(operatorNS), client.MatchingLabels{snapshot.LabelConfig: configName}); err != nil {
			return err
		}
		if len(list.Items) == 0 {
			return fmt.Errorf("no config shards")
		}
		return nil
	})
}
