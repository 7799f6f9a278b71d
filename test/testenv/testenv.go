// Package testenv starts a real kube-apiserver and etcd (envtest) with Postwarden's CRDs
// and cert-manager's CRDs installed, for tests of the API and the controllers, or a bare
// one (Bare) for the relay's tests; it also holds small helpers the tests share.
//
// The binaries come from hack/envtest-assets.sh, which `make test` runs and whose output
// it exports as KUBEBUILDER_ASSETS. Without it, tests that need a control plane fail with
// a message that says how to get one.
package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/postwarden/postwarden/controllers"
)

// Env is a running control plane.
type Env struct {
	Config *rest.Config
	// Client talks to the API server directly, with no cache.
	Client client.Client
	// Kubeconfig is a kubeconfig file for kubectl, with admin rights.
	Kubeconfig string

	env *envtest.Environment
	dir string
}

// RepoRoot returns the repository's top folder.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// CertManagerCRDs returns the folder of cert-manager's CRDs in the module cache, at the
// version go.mod pins.
func CertManagerCRDs() (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager")
	cmd.Dir = RepoRoot()
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locating the cert-manager module: %w", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds"), nil
}

// Start starts a control plane with every CRD installed. Call Stop when done.
func Start() (*Env, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, " +
			"or export KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh)")
	}
	certManager, err := CertManagerCRDs()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases"), certManager},
		ErrorIfCRDPathMissing: true,
		Scheme:                controllers.Scheme,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting envtest: %w", err)
	}
	e := &Env{Config: cfg, env: env}
	if e.Client, err = client.New(cfg, client.Options{Scheme: controllers.Scheme}); err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("creating client: %w", err)
	}
	if e.dir, err = os.MkdirTemp("", "postwarden-testenv-"); err != nil {
		_ = env.Stop()
		return nil, err
	}
	user, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		_ = e.Stop()
		return nil, fmt.Errorf("adding admin user: %w", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		_ = e.Stop()
		return nil, fmt.Errorf("writing kubeconfig: %w", err)
	}
	e.Kubeconfig = filepath.Join(e.dir, "kubeconfig")
	if err := os.WriteFile(e.Kubeconfig, kubeconfig, 0o600); err != nil {
		_ = e.Stop()
		return nil, err
	}
	return e, nil
}

// Stop stops the control plane and removes its files.
func (e *Env) Stop() error {
	err := e.env.Stop()
	if e.dir != "" {
		err = errors.Join(err, os.RemoveAll(e.dir))
	}
	return err
}

// Kubectl runs the kubectl built beside kube-apiserver against the control plane, with
// stdin as its input, and returns its combined output.
func (e *Env) Kubectl(stdin []byte, args ...string) (string, error) {
	bin := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
	cmd := exec.Command(bin, append([]string{"--kubeconfig", e.Kubeconfig}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}
