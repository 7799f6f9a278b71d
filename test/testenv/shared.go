package testenv

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/postwarden/postwarden/test/testkit"
)

// Bare is a control plane without CRDs, for packages that need only core and
// coordination types. The first test that asks for it starts it, so the package's other
// tests run without envtest binaries; TestMain calls Stop.
type Bare struct {
	once sync.Once
	env  *envtest.Environment
	cfg  *rest.Config
	cs   kubernetes.Interface
	err  error
}

// Config returns the API server's config, starting it on first use.
func (b *Bare) Config(t testing.TB) *rest.Config {
	t.Helper()
	b.once.Do(func() {
		if os.Getenv("KUBEBUILDER_ASSETS") == "" {
			b.err = errors.New("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, " +
				"or export KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh)")
			return
		}
		env := &envtest.Environment{}
		cfg, err := env.Start()
		if err != nil {
			b.err = fmt.Errorf("starting envtest: %w", err)
			return
		}
		b.env, b.cfg = env, cfg
		b.cs, b.err = kubernetes.NewForConfig(cfg)
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.cfg
}

// Clientset returns a client of the API server, starting it on first use.
func (b *Bare) Clientset(t testing.TB) kubernetes.Interface {
	t.Helper()
	b.Config(t)
	return b.cs
}

// Stop stops the API server if it was started.
func (b *Bare) Stop() {
	if b.env != nil {
		_ = b.env.Stop()
	}
}

// SyncBuffer collects output, such as logs, from several goroutines.
type SyncBuffer = testkit.LogBuffer
