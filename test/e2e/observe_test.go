package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/test/dev"
	"github.com/postwarden/postwarden/test/testkit"
)

func report(what string, d time.Duration) {
	fmt.Printf("e2e: %-58s %8.1f ms\n", what, float64(d.Microseconds())/1000)
}

func waitPolicyReady(t testing.TB, ns, name string) {
	t.Helper()
	err := dev.Poll(t.Context(), time.Minute, func() error {
		var p relayv1alpha1.TLSDeliveryPolicy
		if err := env.Client.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: name}, &p); err != nil {
			return err
		}
		c := meta.FindStatusCondition(p.Status.Conditions, "Ready")
		if c == nil || c.Status != "True" || c.ObservedGeneration != p.Generation {
			return fmt.Errorf("not ready at generation %d: %+v", p.Generation, c)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("TLSDeliveryPolicy %s: %v", name, err)
	}
}

func waitMessage(t testing.TB, s *testkit.Server, id string) testkit.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	m, err := s.Wait(ctx, func(m testkit.Message) bool { return bytes.Contains(m.Data, []byte("<"+id+"@dev.postwarden>")) })
	if err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	return m
}

// metric sums the relay's samples of a metric whose name ends in suffix and whose
// labels include every one of labels.
func metric(t testing.TB, suffix string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + env.Relay.HTTPAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
lines:
	for line := range strings.Lines(string(body)) {
		name, rest, ok := strings.Cut(line, "{")
		if !ok || !strings.HasSuffix(name, suffix) {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				continue lines
			}
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// metricUnit turns "a -> b (c, d)" into "a-b-c-d".
func metricUnit(what string) string {
	return strings.Join(strings.FieldsFunc(what, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.')
	}), "-")
}

func indent(s, prefix string) string {
	var b strings.Builder
	for line := range strings.Lines(strings.TrimSpace(s)) {
		b.WriteString(prefix + line)
	}
	return b.String()
}
