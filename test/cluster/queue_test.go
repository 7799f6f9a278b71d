//go:build cluster

package cluster

import (
	"encoding/json"
	"strings"
	"testing"
)

// checkQueueTools runs `postwarden queue` in a relay pod as an administrator does, with
// kubectl exec: the admin socket is in the spool volume of a pod that runs as non-root
// on a read-only root filesystem, and the tool must find it there by default.
func checkQueueTools(t *testing.T, pod string) {
	t.Helper()
	out := kube(t, "", "exec", "-n", namespace, pod, "-c", "relay", "--", "postwarden", "queue", "list", "-o", "json")
	var msgs []struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	if err := json.Unmarshal([]byte(out), &msgs); err != nil {
		t.Fatalf("postwarden queue list -o json in %s printed no JSON (%v):\n%s", pod, err, out)
	}
	for _, m := range msgs {
		if m.ID == "" || (m.State != "active" && m.State != "deferred" && m.State != "held") {
			t.Errorf("postwarden queue list in %s: message %+v", pod, m)
		}
	}
	t.Logf("%s queues %d messages", pod, len(msgs))

	// kubectl exec passes the tool's exit code on: 66 is "no such message".
	_, err := kubeErr("", "exec", "-n", namespace, pod, "-c", "relay", "--", "postwarden", "queue", "show", "000000000000000000")
	if err == nil || !strings.Contains(err.Error(), "exit code 66") {
		t.Errorf("postwarden queue show of an unknown id in %s: %v, want exit code 66", pod, err)
	}
}
