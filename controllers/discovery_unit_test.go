package controllers

import (
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	dstate "github.com/postwarden/postwarden/controllers/discovery/state"
	"github.com/postwarden/postwarden/relay/snapshot"
)

func TestReportSlot(t *testing.T) {
	// 2026-03-04 is a Wednesday.
	wed := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	cases := map[string]struct {
		schedule *relayv1alpha1.ReportSchedule
		now      time.Time
		want     time.Time
	}{
		"the default is the last Monday 08:00":         {nil, wed, time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)},
		"today's slot counts once its time has come":   {&relayv1alpha1.ReportSchedule{DayOfWeek: "Wednesday", TimeOfDay: "11:59"}, wed, time.Date(2026, 3, 4, 11, 59, 0, 0, time.UTC)},
		"today's slot later in the day is next week's": {&relayv1alpha1.ReportSchedule{DayOfWeek: "Wednesday", TimeOfDay: "12:01"}, wed, time.Date(2026, 2, 25, 12, 1, 0, 0, time.UTC)},
		"the slot at exactly now is due":               {&relayv1alpha1.ReportSchedule{DayOfWeek: "Wednesday", TimeOfDay: "12:00"}, wed, wed},
		"a Sunday before a Wednesday":                  {&relayv1alpha1.ReportSchedule{DayOfWeek: "Sunday"}, wed, time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)},
		"only the time set keeps Monday":               {&relayv1alpha1.ReportSchedule{TimeOfDay: "23:30"}, wed, time.Date(2026, 3, 2, 23, 30, 0, 0, time.UTC)},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := reportSlot(c.schedule, c.now); !got.Equal(c.want) {
				t.Errorf("slot %s, want %s", got, c.want)
			}
		})
	}
}

func TestBuildReportListsWhatIsNewSinceTheLastReport(t *testing.T) {
	last := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	now := last.AddDate(0, 0, 7)
	p := &relayv1alpha1.DiscoveryPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "learn"},
		Spec: relayv1alpha1.DiscoveryPolicySpec{ReportRecipients: []string{"it@acme.com"}}}
	st := &storedState{state: dstate.State{Addresses: []dstate.Address{
		{Address: "old@acme.com", State: snapshot.DiscoveredUser, Reason: dstate.ReasonThreshold, Since: last.Add(-time.Hour)},
		{Address: "new@acme.com", State: snapshot.DiscoveredUser, Reason: dstate.ReasonThreshold, Since: last.Add(time.Hour)},
		{Address: "jane@acme.net", State: snapshot.DiscoveredAlias, Target: "jane@acme.com", Reason: dstate.ReasonLocalPart, Since: last.Add(2 * time.Hour)},
		{Address: "maybe@acme.com", State: snapshot.DiscoveredPending, Since: last.Add(time.Hour)},
	}}, parts: []*corev1.ConfigMap{{ObjectMeta: metav1.ObjectMeta{Namespace: "postwarden-system", Name: dstate.StateName("acme", "learn", 0)}}}}
	rep := buildReport(p, []string{"acme.net", "acme.com"}, st, last, now)
	if rep.from != "postmaster@acme.com" {
		t.Errorf("from %s", rep.from)
	}
	if rep.subject != "SMTP Discovery report for acme/learn: 1 new user, 1 new alias" {
		t.Errorf("subject %q", rep.subject)
	}
	for _, want := range []string{"new@acme.com", "jane@acme.net -> jane@acme.com", "postwarden-discovery-acme.learn of namespace postwarden-system", "2 users, 1 aliases, 1 pending"} {
		if !strings.Contains(rep.body, want) {
			t.Errorf("body lacks %q:\n%s", want, rep.body)
		}
	}
	if strings.Contains(rep.body, "old@acme.com") {
		t.Errorf("body lists a user reported last week:\n%s", rep.body)
	}
	msg := string(rep.message(now, "relay.example"))
	for _, h := range []string{"Date: ", "Message-ID: <", "From: Postwarden <postmaster@acme.com>\r\n", "To: it@acme.com\r\n", "Auto-Submitted: auto-generated\r\n"} {
		if !strings.Contains(msg, h) {
			t.Errorf("message lacks %q", h)
		}
	}
}

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
