package relay

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// trackingChecks says, for each jq example of the docs, what its output must be on the
// log of runTracking.
func trackingChecks(run *trackingRun) map[string]func(out string) error {
	return map[string]func(string) error{
		"by-queue-id": func(out string) error {
			recs, err := jsonLines(out)
			if err != nil {
				return err
			}
			var events []string
			for _, r := range recs {
				if r["queue_id"] != run.a {
					return fmt.Errorf("a line of another message: %v", r)
				}
				events = append(events, r["event"].(string))
			}
			return sameSet(events, "accepted", "delivered", "deferred", "dsn_sent")
		},
		"by-message-id": func(out string) error { return wantRows(rowsOf(out, 0), []string{run.a}) },
		"by-sender": func(out string) error {
			return wantRows(rowsOf(out, 1),
				[]string{"accepted", run.a, rcptOK + " " + rcptLater},
				[]string{"delivered", run.a, rcptOK}, []string{"deferred", run.a, rcptLater})
		},
		"by-sasl-user": func(out string) error {
			return wantRows(rowsOf(out, 1), []string{run.a, "sender@example.com", rcptOK + " " + rcptLater, "{size}"})
		},
		"deferred-last-hour": func(out string) error {
			return wantRows(rowsOf(out, 0), []string{run.a, rcptLater, "127.0.0.1", "450", "4.2.1", "mailbox busy, try later"})
		},
		"bounced": func(out string) error {
			return wantRows(rowsOf(out, 1), []string{run.b, "app@example.net", rcptGone, "127.0.0.1", "550 5.1.1 no such user"})
		},
		"dsn-sent": func(out string) error {
			rows := rowsOf(out, 1)
			// a's delay notice and b's bounce may be queued in either order.
			slices.SortFunc(rows, func(x, y []string) int { return strings.Compare(y[0], x[0]) })
			if len(rows) != 2 || rows[0][2] == rows[1][2] || len(rows[0][2]) != 18 || len(rows[1][2]) != 18 {
				return fmt.Errorf("want two notifications with queue ids of their own")
			}
			return wantRows(rows,
				[]string{"delay", run.a, rows[0][2], "sender@example.com"},
				[]string{"bounce", run.b, rows[1][2], "app@example.net"})
		},
		"sending-server": func(out string) error {
			return wantRows(rowsOf(out, 1), []string{"127.0.0.1", "example.net", "app@example.net", run.b})
		},
		"unverified-tls": func(out string) error {
			var got []map[string]any
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				return err
			}
			// ok@, then each notification, all in plaintext to the smarthost.
			want := map[string]any{"tls_policy": "default", "remote_host": "127.0.0.1", "tls_version": "none", "count": float64(3)}
			if len(got) != 1 || fmt.Sprint(got[0]) != fmt.Sprint(want) {
				return fmt.Errorf("want %v", want)
			}
			return nil
		},
		"last-outcome": func(out string) error {
			var got []map[string]any
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				return err
			}
			if len(got) != 2 || got[0]["recipient"] != rcptLater || got[0]["event"] != "deferred" ||
				got[0]["reply"] != "mailbox busy, try later" || got[1]["recipient"] != rcptOK || got[1]["event"] != "delivered" {
				return fmt.Errorf("want %s deferred and %s delivered", rcptLater, rcptOK)
			}
			return nil
		},
	}
}

// jsonLines parses jq -c output.
func jsonLines(out string) ([]map[string]any, error) {
	var recs []map[string]any
	for line := range strings.Lines(out) {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// rowsOf splits jq -r's output into rows of tab-separated columns (@tsv), without the
// first skip columns, whose values the test cannot know (the time).
func rowsOf(out string, skip int) [][]string {
	var rows [][]string
	for line := range strings.Lines(out) {
		f := strings.Split(strings.TrimRight(line, "\n"), "\t")
		rows = append(rows, f[min(skip, len(f)):])
	}
	return rows
}

// wantRows compares rows with want, in order; "{size}" matches a positive number.
func wantRows(got [][]string, want ...[]string) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d rows, want %d: %q", len(got), len(want), want)
	}
	for i := range want {
		if !slices.EqualFunc(got[i], want[i], func(g, w string) bool {
			return g == w || w == "{size}" && g != "" && g != "0" && strings.Trim(g, "0123456789") == ""
		}) {
			return fmt.Errorf("row %d is %q, want %q", i, got[i], want[i])
		}
	}
	return nil
}

// sameSet reports whether got holds exactly want, in any order.
func sameSet(got []string, want ...string) error {
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return fmt.Errorf("events %v, want %v", got, want)
	}
	return nil
}
