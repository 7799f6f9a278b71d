package discovery

import (
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
