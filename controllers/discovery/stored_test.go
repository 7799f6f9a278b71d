package discovery

import (
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	dstate "github.com/postwarden/postwarden/controllers/discovery/state"
	"github.com/postwarden/postwarden/relay/snapshot"
)

func TestReadStateNeedsACompleteSet(t *testing.T) {
	st := dstate.State{Version: dstate.StateVersion, Policy: "ns/p", Addresses: []dstate.Address{
		{Address: "a@x.example", State: snapshot.DiscoveredPending}, {Address: "b@x.example", State: snapshot.DiscoveredUser},
		{Address: "c@x.example", State: snapshot.DiscoveredUser}, {Address: "d@x.example", State: snapshot.DiscoveredUser}}}
	parts, err := dstate.Shard(st, dstate.MaxPartBytes, 2)
	if err != nil {
		t.Fatal(err)
	}
	cm := func(i, n int, data []byte) corev1.ConfigMap {
		return corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: dstate.StateName("mail", "p", i), Annotations: map[string]string{
			dstate.AnnotationPart: strconv.Itoa(i), dstate.AnnotationParts: strconv.Itoa(n)}},
			Data: map[string]string{dstate.StateKey: string(data)}}
	}
	got, err := readState([]corev1.ConfigMap{cm(1, 2, parts[1]), cm(0, 2, parts[0])}, "ns/p")
	if err != nil || len(got.state.Addresses) != 4 {
		t.Fatalf("complete set: %v, %+v", err, got)
	}
	if _, err := readState([]corev1.ConfigMap{cm(0, 2, parts[0])}, "ns/p"); err == nil {
		t.Error("a missing part was accepted")
	}
	whole, _ := dstate.EncodeState(st)
	if _, err := readState([]corev1.ConfigMap{cm(0, 2, parts[0]), cm(1, 1, whole)}, "ns/p"); err == nil {
		t.Error("parts of two writes were mixed")
	}
	if got, err := readState(nil, "ns/p"); err != nil || len(got.state.Addresses) != 0 {
		t.Errorf("no ConfigMap: %v %+v", err, got)
	}
}

func TestSalvageKeepsWhatDecodes(t *testing.T) {
	st := dstate.State{Version: dstate.StateVersion, Policy: "ns/p",
		Journals: map[string]dstate.Watermark{"j": {Seq: 7}}}
	for _, a := range []string{"a", "b", "c", "d", "e", "f"} {
		st.Addresses = append(st.Addresses, dstate.Address{Address: a + "@x.example", State: snapshot.DiscoveredUser})
	}
	parts, err := dstate.Shard(st, dstate.MaxPartBytes, 2)
	if err != nil {
		t.Fatal(err)
	}
	cm := func(i int, data string) corev1.ConfigMap {
		return corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: dstate.StateName("mail", "p", i), Annotations: map[string]string{
			dstate.AnnotationPart: strconv.Itoa(i), dstate.AnnotationParts: "2"}},
			Data: map[string]string{dstate.StateKey: data}}
	}
	cases := map[string]struct {
		cms           []corev1.ConfigMap
		wantWatermark uint64
		wantFrom      []byte // the addresses of this part survive
	}{
		"part 1 deleted: part 0 and its watermarks survive": {[]corev1.ConfigMap{cm(0, string(parts[0]))}, 7, parts[0]},
		"part 0 garbled: part 1's addresses survive":        {[]corev1.ConfigMap{cm(0, "{not json"), cm(1, string(parts[1]))}, 0, parts[1]},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got := salvageState(c.cms, "ns/p")
			if got.state.Journals["j"].Seq != c.wantWatermark {
				t.Errorf("watermark %d, want %d", got.state.Journals["j"].Seq, c.wantWatermark)
			}
			want := strings.Count(string(c.wantFrom), `"address"`)
			if want == 0 || len(got.state.Addresses) != want {
				t.Errorf("%d addresses survive, want %d", len(got.state.Addresses), want)
			}
		})
	}
}
