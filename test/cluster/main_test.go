//go:build cluster

// Package cluster tests Postwarden as users run it: the image this repository builds,
// installed by the Helm chart (with the Helm Go SDK) into a real single-node Kubernetes
// cluster (hack/cluster.sh: kubelet, containerd, kube-proxy, all on this machine), with
// the real cert-manager controllers issuing the relay's certificate, and real SMTP
// clients (swaks, Python's smtplib, go-smtp) outside the cluster sending through the
// relay Service's node ports.
//
// Run it with `make test-cluster` (root; the first run builds the cluster's commands).
// POSTWARDEN_CLUSTER_DIR=DIR keeps the cluster in DIR after the run and reuses it next
// time, which makes iterating on the test fast; `hack/cluster.sh down DIR` removes it.
package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postwarden/postwarden/test/testenv"
)

// imageRef is the postwarden image the chart installs; it is imported, never pulled.
const imageRef = "ghcr.io/postwarden/postwarden:cluster-test"

// dir holds the running cluster (kubeconfig, logs, PKI); kubectl is its kubectl.
var dir, kubectl string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Println("test/cluster: the cluster needs root; skipping")
		return 0
	}
	keep := os.Getenv("POSTWARDEN_CLUSTER_DIR")
	dir = keep
	if dir == "" {
		d, err := os.MkdirTemp("", "postwarden-cluster-")
		if err != nil {
			fmt.Println(err)
			return 1
		}
		dir = d
	}
	if _, err := os.Stat(filepath.Join(dir, "kubeconfig")); err != nil {
		if err := script("cluster.sh", "up", dir); err != nil {
			fmt.Printf("test/cluster: starting the cluster: %v\n", err)
			printLogs()
			_ = script("cluster.sh", "down", dir)
			return 1
		}
	}
	if keep == "" {
		defer func() {
			if err := script("cluster.sh", "down", dir); err != nil {
				fmt.Printf("test/cluster: removing the cluster: %v\n", err)
			}
		}()
	}
	bin, err := os.ReadFile(filepath.Join(dir, "bin"))
	if err != nil {
		fmt.Println(err)
		return 1
	}
	kubectl = filepath.Join(strings.TrimSpace(string(bin)), "kubectl")
	images := filepath.Join(dir, "images")
	build := exec.Command(filepath.Join(testenv.RepoRoot(), "hack", "cluster-images.sh"), images, imageRef)
	build.Stderr = os.Stderr
	out, err := build.Output()
	if err != nil {
		fmt.Printf("test/cluster: building images: %v\n", err)
		return 1
	}
	if err := script("cluster.sh", append([]string{"import", dir}, strings.Fields(string(out))...)...); err != nil {
		fmt.Printf("test/cluster: importing images: %v\n", err)
		return 1
	}
	code := m.Run()
	if code != 0 {
		printLogs()
	}
	return code
}

// script runs one of hack/'s scripts, its output going to the test's.
func script(name string, args ...string) error {
	cmd := exec.Command(filepath.Join(testenv.RepoRoot(), "hack", name), args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

// printLogs shows the end of each cluster component's log, for a failed run.
func printLogs() {
	logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
	for _, l := range logs {
		out, _ := exec.Command("tail", "-n", "15", l).Output()
		fmt.Printf("--- %s\n%s", filepath.Base(l), out)
	}
}
