//go:build cluster

package cluster

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// waitLogin waits for a credential's Secret and returns its login.
func waitLogin(t testing.TB, secret, sender string) login {
	t.Helper()
	var l login
	eventually(t, 2*time.Minute, "credential Secret "+secret, func() error {
		out, err := kubeErr("", "get", "secret", "-n", "mail", secret, "-o", "json")
		if err != nil {
			return err
		}
		var s struct{ Data map[string]string }
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			return err
		}
		user, _ := base64.StdEncoding.DecodeString(s.Data["username"])
		pass, _ := base64.StdEncoding.DecodeString(s.Data["password"])
		if len(user) == 0 || len(pass) == 0 {
			return errors.New("no username or password yet")
		}
		l = login{username: string(user), password: string(pass), sender: sender}
		return nil
	})
	return l
}

func applyCredential(t testing.TB, name string) {
	t.Helper()
	kube(t, fmt.Sprintf(`apiVersion: relay.postwarden.dev/v1alpha1
kind: SMTPCredential
metadata: {name: %s, namespace: mail}
spec:
  mailDomainRef: {name: example-com}
  label: %s
  allowedSenders: [billing@example.com]
  secretName: %s-smtp
`, name, name, name), "apply", "--server-side", "-f", "-")
}

// credentialPropagation applies n new SMTPCredentials one after another and measures,
// for each, the time from apply to the first accepted AUTH through the Service.
func credentialPropagation(t *testing.T, sub submitter, n int) []time.Duration {
	var took []time.Duration
	for i := range n {
		name := fmt.Sprintf("probe-%d", i)
		start := time.Now()
		applyCredential(t, name)
		fresh := submitter{addr: sub.addr, roots: sub.roots, login: waitLogin(t, name+"-smtp", "billing@example.com")}
		eventually(t, time.Minute, name+" logs in", func() error {
			c, err := fresh.dial()
			if err != nil {
				return err
			}
			return c.Quit()
		})
		took = append(took, time.Since(start))
	}
	return took
}

func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))].Round(time.Millisecond)
}

// waitDelivered waits until the sink has the message with this Message-ID.
func waitDelivered(t testing.TB, id string) {
	t.Helper()
	eventually(t, 2*time.Minute, id+" reaches the sink", func() error {
		if sinkCounts(t)[id] == 0 {
			return errors.New("not delivered yet")
		}
		return nil
	})
}

// operatorLeader is the operator pod that holds the leader election Lease.
func operatorLeader(t testing.TB) string {
	t.Helper()
	holder := kube(t, "", "get", "lease", "-n", namespace, "operator.relay.postwarden.dev", "-o", "jsonpath={.spec.holderIdentity}")
	pod, _, _ := strings.Cut(holder, "_")
	if !strings.HasPrefix(pod, operatorDep) {
		t.Fatalf("the leader election Lease is held by %q, not an operator pod", holder)
	}
	return pod
}

func restarts(t testing.TB, pod string) int {
	t.Helper()
	n, _ := strconv.Atoi(kube(t, "", "get", "pod", "-n", namespace, pod, "-o", "jsonpath={.status.containerStatuses[0].restartCount}"))
	return n
}

// queuedFiles counts the files in the queue folder of a spool claim's volume.
func queuedFiles(t testing.TB, claim string) int {
	t.Helper()
	pv := kube(t, "", "get", "pvc", "-n", namespace, claim, "-o", "jsonpath={.spec.volumeName}")
	path := kube(t, "", "get", "pv", pv, "-o", "jsonpath={.spec.hostPath.path}")
	// The spool makes its queue folder when it opens: a missing one means the wrong
	// folder, not an empty queue.
	entries, err := os.ReadDir(filepath.Join(path, "queue"))
	if err != nil {
		t.Fatalf("reading the spool of claim %s: %v", claim, err)
	}
	return len(entries)
}

// residentMemory reads the resident set size of each Postwarden container from /proc,
// through the PIDs containerd reports, to compare with the chart's resource requests.
func residentMemory(t testing.TB) []string {
	t.Helper()
	out, err := exec.Command("ctr", "--address", filepath.Join(dir, "containerd", "containerd.sock"), "-n", "k8s.io", "tasks", "ls").Output()
	if err != nil {
		t.Fatalf("ctr tasks ls: %v", err)
	}
	pids := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			pids[f[0]] = f[1]
		}
	}
	pods := kube(t, "", "get", "pods", "-n", namespace, "-o",
		`jsonpath={range .items[*]}{.metadata.name} {.status.containerStatuses[0].containerID}{"\n"}{end}`)
	var rss []string
	for _, line := range strings.Split(strings.TrimSpace(pods), "\n") {
		name, id, _ := strings.Cut(line, " ")
		status, err := os.ReadFile(filepath.Join("/proc", pids[strings.TrimPrefix(id, "containerd://")], "status"))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				rss = append(rss, fmt.Sprintf("%s %s", name, strings.Join(strings.Fields(v), " ")))
			}
		}
	}
	return rss
}

func splitAddr(addr string) (host, port string) {
	host, port, _ = strings.Cut(addr, ":")
	return host, port
}
