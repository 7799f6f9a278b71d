package delivery

import (
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/postwarden/postwarden/relay/outbound"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// loginFailureWindow is how long a failed login is reported after its last attempt: a
// hop that logs in again, or is not tried again, leaves the report.
const loginFailureWindow = time.Hour

// loginFailures remembers, per hop that logs in (Route.AuthSecret), the last attempt
// whose login failed, for the relay's status Lease: the operator turns it into an Event
// on the MailDomain, which is how a tenant learns that its password is wrong.
type loginFailures struct {
	mu   sync.Mutex
	last map[string]snapshot.LoginFailure
}

// note records the outcome of an attempt on r: err is why it failed, nil when it got
// through (which clears the hop's failure).
func (f *loginFailures) note(r Route, err error, now time.Time) {
	if r.AuthSecret == "" {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.last, r.AuthSecret)
		return
	}
	if f.last == nil {
		f.last = map[string]snapshot.LoginFailure{}
	}
	reason := err.Error()
	if len(reason) > snapshot.MaxLoginFailureReason {
		reason = reason[:snapshot.MaxLoginFailureReason]
	}
	f.last[r.AuthSecret] = snapshot.LoginFailure{AuthSecret: r.AuthSecret, Host: hostNames(r.Hosts), Reason: reason, At: now.UTC()}
}

// isLoginFailure says whether err is about the login, not the host: a refused login, or
// credentials that would have gone out without TLS.
func isLoginFailure(err error) bool {
	return errors.Is(err, outbound.ErrLoginRefused) || errors.Is(err, outbound.ErrPlaintextAuth)
}

// recent returns the failures of the last window, newest first, at most
// snapshot.MaxLoginFailures.
func (f *loginFailures) recent(now time.Time) []snapshot.LoginFailure {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []snapshot.LoginFailure
	for name, lf := range f.last {
		if now.Sub(lf.At) > loginFailureWindow {
			delete(f.last, name)
			continue
		}
		out = append(out, lf)
	}
	slices.SortFunc(out, func(a, b snapshot.LoginFailure) int { return b.At.Compare(a.At) })
	return out[:min(len(out), snapshot.MaxLoginFailures)]
}

// LoginFailures returns the hops whose login failed within the last hour, for the
// relay's status Lease.
func (cl *Client) LoginFailures() []snapshot.LoginFailure { return cl.logins.recent(cl.now()) }
