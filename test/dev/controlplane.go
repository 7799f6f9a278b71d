package dev

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/postwarden/postwarden/controllers"
)

const modulePath = "github.com/postwarden/postwarden"

// RepoRoot finds the repository: beside this source file when it is there (go run, go
// test), else the nearest folder above the working directory whose go.mod is ours.
func RepoRoot() (string, error) {
	_, file, _, _ := runtime.Caller(0)
	candidates := []string{filepath.Join(filepath.Dir(file), "..", "..")}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			candidates = append(candidates, dir)
			if dir == filepath.Dir(dir) {
				break
			}
		}
	}
	for _, dir := range candidates {
		mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(mod, []byte("module "+modulePath+"\n")) {
			return filepath.Clean(dir), nil
		}
	}
	return "", errors.New("cannot find the postwarden repository: run from inside it")
}

// envtestAssets returns KUBEBUILDER_ASSETS, or builds the binaries with
// hack/envtest-assets.sh (cached after the first run), its progress going to progress.
func envtestAssets(root string, progress io.Writer) (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	fmt.Fprintln(progress, "dev: locating kube-apiserver, etcd and kubectl (hack/envtest-assets.sh; the first run builds them, a few minutes)")
	cmd := exec.Command(filepath.Join(root, "hack", "envtest-assets.sh"))
	cmd.Dir = root
	cmd.Stderr = progress
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/envtest-assets.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// certManagerCRDs returns cert-manager's CRD folder from the module cache, downloading
// the module if needed.
func certManagerCRDs(root string) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", "github.com/cert-manager/cert-manager")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locating the cert-manager module: %w", err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("locating the cert-manager module: no folder in %q", out)
	}
	return filepath.Join(mod.Dir, "deploy", "crds"), nil
}

// controlPlane is a running kube-apiserver and etcd with every CRD installed.
type controlPlane struct {
	env        *envtest.Environment
	config     *rest.Config
	kubeconfig string
	kubectl    string
}

func startControlPlane(root, dir string, progress io.Writer) (*controlPlane, error) {
	assets, err := envtestAssets(root, progress)
	if err != nil {
		return nil, err
	}
	certManager, err := certManagerCRDs(root)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(progress, "dev: starting etcd and kube-apiserver")
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases"), certManager},
		ErrorIfCRDPathMissing: true,
		Scheme:                controllers.Scheme,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	cp := &controlPlane{env: env, config: cfg, kubectl: filepath.Join(assets, "kubectl")}
	user, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err == nil {
		var kc []byte
		if kc, err = user.KubeConfig(); err == nil {
			cp.kubeconfig = filepath.Join(dir, "kubeconfig")
			err = os.WriteFile(cp.kubeconfig, kc, 0o600)
		}
	}
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("writing the kubeconfig: %w", err)
	}
	return cp, nil
}

func (cp *controlPlane) stop() error { return cp.env.Stop() }
