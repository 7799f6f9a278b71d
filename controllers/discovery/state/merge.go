package state

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/postwarden/postwarden/relay/discoverystate"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// Defaults for what a Policy leaves at zero.
const (
	// DefaultMaxAddressesPerDomain bounds the tracked addresses of one domain. Beyond
	// it, Merge forgets Invalid then Pending addresses, least recently seen first, and
	// once users and aliases alone reach it, no further address is promoted: the
	// directory every relay holds in memory stays bounded whatever mail arrives.
	DefaultMaxAddressesPerDomain = 50000
	// CatchAllWindow is how long a catch-all detection holds. Relays probe again at most
	// daily while callouts succeed, so a server that stops accepting every address is
	// trusted again within this window.
	CatchAllWindow = 3 * day
	// DefaultJournalRetention is how long the watermark of a silent journal is kept.
	DefaultJournalRetention = 90 * 24 * time.Hour
	day                     = 24 * time.Hour
)

// Policy is what Merge needs to know about a DiscoveryPolicy: its settings and the
// domains it covers, as compiled into the snapshot (only their names, users,
// functional accounts, aliases and invalid addresses are read: the spec's lists).
type Policy struct {
	snapshot.DiscoveryPolicy
	Domains []snapshot.Domain
	// MaxAddressesPerDomain; zero means DefaultMaxAddressesPerDomain.
	MaxAddressesPerDomain int
	// JournalRetention; zero means DefaultJournalRetention.
	JournalRetention time.Duration
}

// scope is the policy's view of the spec, indexed.
type scope struct {
	p       Policy
	limit   int
	covered map[string]bool
	// catchAll holds the domains currently found catch-all, with the last detection.
	catchAll map[string]time.Time
	// promoted counts discovered users and aliases per domain, once needed.
	promoted map[string]int
	listed   map[string]bool
	users    map[string][]string // local part -> spec users, sorted
}

func newScope(p Policy) *scope {
	s := &scope{p: p, limit: cmp.Or(p.MaxAddressesPerDomain, DefaultMaxAddressesPerDomain),
		covered: map[string]bool{}, listed: map[string]bool{}, users: map[string][]string{}, catchAll: map[string]time.Time{}}
	for _, d := range p.Domains {
		s.covered[d.Name] = true
		for _, u := range d.Users {
			s.listed[u.Address] = true
			s.users[localpart(u.Address)] = append(s.users[localpart(u.Address)], u.Address)
		}
		for _, a := range d.FunctionalAccounts {
			s.listed[a] = true
		}
		for _, a := range d.Aliases {
			s.listed[a.Address] = true
		}
		for _, a := range d.InvalidAddresses {
			s.listed[a] = true
		}
	}
	for _, us := range s.users {
		slices.Sort(us)
	}
	return s
}

// Merge folds batches of observations into st and applies the lifecycle at now; it
// returns the new state and leaves st untouched. It is deterministic, and idempotent
// per observation: an observation whose Seq is at or below its journal's watermark is
// skipped, so a batch published twice counts once.
//
// The lifecycle of an address of a covered domain that the spec does not list:
//   - Verified creates it Pending (first seen); Refused forgets a Pending address, since
//     the domain's server no longer knows it; refusals of untracked addresses are not
//     kept, so a dictionary attack cannot fill the state;
//   - Delivered counts a clean message (creating the address Pending if needed); at
//     Threshold clean messages within WindowDays it becomes a User with DefaultRole;
//   - a Pending address not promoted ExpiryDays after it was first seen becomes Invalid,
//     or a User when ExpiredAddressesBecomeUsers;
//   - OutboundSender makes it a User when AutoAddOutboundUsers;
//   - with AutoAddAliases, a Pending address whose local part is that of a user of
//     another covered domain becomes an Alias of that user.
//
// Two guards bound what a domain's server or its senders can make the state hold:
//   - CatchAll marks the domain catch-all for CatchAllWindow; meanwhile Verified and
//     Delivered create no new address of it (a server that accepts everything would
//     turn every guessed address into a user);
//   - once a domain's discovered users and aliases reach MaxAddressesPerDomain, no
//     further address of it is promoted: Pending ones expire as Invalid.
//
// The spec always wins: an address it lists is dropped from the state.
func Merge(st State, batches []discoverystate.Batch, p Policy, now time.Time) State {
	sc := newScope(p)
	out := State{Version: StateVersion, Policy: p.Name, Journals: make(map[string]Watermark, len(st.Journals))}
	for id, w := range st.Journals {
		out.Journals[id] = w
	}
	for d, t := range st.CatchAll {
		if sc.covered[d] {
			sc.catchAll[d] = t
		}
	}
	byAddr := make(map[string]*Address, len(st.Addresses))
	for _, a := range st.Addresses {
		a.Clean = slices.Clone(a.Clean)
		byAddr[a.Address] = &a
	}
	for _, b := range batches {
		if b.Version != discoverystate.BatchVersion || b.Journal == "" {
			continue
		}
		w := out.Journals[b.Journal]
		high := w.Seq
		for _, o := range b.Observations {
			if o.Seq <= w.Seq {
				continue
			}
			high = max(high, o.Seq)
			sc.apply(byAddr, o)
		}
		out.Journals[b.Journal] = Watermark{Seq: high, Seen: now}
	}
	retention := cmp.Or(p.JournalRetention, DefaultJournalRetention)
	for id, w := range out.Journals {
		if now.Sub(w.Seen) > retention {
			delete(out.Journals, id)
		}
	}
	for d, t := range sc.catchAll {
		if now.Sub(t) > CatchAllWindow {
			delete(sc.catchAll, d)
		}
	}
	if len(sc.catchAll) > 0 {
		out.CatchAll = sc.catchAll
	}
	sc.evaluate(byAddr, now)
	out.Addresses = sc.bound(byAddr)
	return out
}

func (sc *scope) apply(byAddr map[string]*Address, o discoverystate.Observation) {
	addr := strings.ToLower(o.Address)
	// Only addresses the snapshot can carry: anything else would make it invalid.
	if !snapshot.IsAddress(addr) || !sc.covered[domainpart(addr)] || sc.listed[addr] {
		return
	}
	a := byAddr[addr]
	if o.Kind == discoverystate.CatchAll {
		if d := domainpart(addr); o.Time.After(sc.catchAll[d]) {
			sc.catchAll[d] = o.Time
		}
		return
	}
	if t, ok := sc.catchAll[domainpart(addr)]; ok && a == nil && (o.Kind == discoverystate.Verified || o.Kind == discoverystate.Delivered) &&
		o.Time.Sub(t) <= CatchAllWindow {
		return // a catch-all server vouches for no address
	}
	touch := func() {
		if o.Time.After(a.LastSeen) {
			a.LastSeen = o.Time
		}
	}
	create := func() {
		a = &Address{Address: addr, State: snapshot.DiscoveredPending, Reason: ReasonVerified,
			FirstSeen: o.Time, LastSeen: o.Time, Since: o.Time}
		byAddr[addr] = a
	}
	switch o.Kind {
	case discoverystate.Verified:
		if a == nil {
			create()
		}
		touch()
	case discoverystate.Refused:
		if a != nil && a.State == snapshot.DiscoveredPending {
			delete(byAddr, addr)
		}
	case discoverystate.Delivered:
		if a == nil {
			create()
		}
		touch()
		if a.State == snapshot.DiscoveredPending {
			a.Clean = append(a.Clean, o.Time)
			slices.SortFunc(a.Clean, time.Time.Compare)
			if t := max(sc.p.Threshold, 1); len(a.Clean) > t {
				a.Clean = slices.Delete(a.Clean, 0, len(a.Clean)-t)
			}
		}
	case discoverystate.OutboundSender:
		if !sc.p.AutoAddOutboundUsers {
			return
		}
		if a == nil {
			create()
		}
		touch()
		if (a.State == snapshot.DiscoveredPending || a.State == snapshot.DiscoveredInvalid) && !sc.full(byAddr, addr) {
			sc.becomeUser(a, ReasonOutbound, o.Time)
		}
	}
}

func (sc *scope) becomeUser(a *Address, reason string, at time.Time) {
	if a.State != snapshot.DiscoveredUser && a.State != snapshot.DiscoveredAlias {
		sc.promote(a.Address)
	}
	a.State, a.Reason, a.Since, a.Clean, a.Target = snapshot.DiscoveredUser, reason, at, nil, ""
	a.Role = cmp.Or(sc.p.DefaultRole, "EndUser")
}

// evaluate applies the time-driven rules at now.
func (sc *scope) evaluate(byAddr map[string]*Address, now time.Time) {
	// Users as they stand before this evaluation: the spec's and the discovered ones.
	users := make(map[string][]string, len(sc.users))
	for lp, us := range sc.users {
		users[lp] = slices.Clone(us)
	}
	for _, a := range byAddr {
		if a.State == snapshot.DiscoveredUser && !sc.listed[a.Address] {
			users[localpart(a.Address)] = append(users[localpart(a.Address)], a.Address)
		}
	}
	for _, us := range users {
		slices.Sort(us)
	}
	window := time.Duration(max(sc.p.WindowDays, 1)) * day
	expiry := time.Duration(max(sc.p.ExpiryDays, 1)) * day
	// In address order, so that which addresses reach a domain's limit first does not
	// depend on map order.
	for _, addr := range slices.Sorted(maps.Keys(byAddr)) {
		a := byAddr[addr]
		if sc.listed[addr] || !sc.covered[domainpart(addr)] {
			delete(byAddr, addr)
			continue
		}
		if a.State != snapshot.DiscoveredPending {
			continue
		}
		a.Clean = slices.DeleteFunc(a.Clean, func(t time.Time) bool { return now.Sub(t) > window })
		if len(a.Clean) == 0 {
			a.Clean = nil
		}
		full := sc.full(byAddr, addr)
		switch {
		case full && now.Sub(a.FirstSeen) >= expiry:
			a.State, a.Reason, a.Since, a.Clean = snapshot.DiscoveredInvalid, ReasonExpired, now, nil
		case full:
			// At the limit: the address waits, Pending, until it expires.
		case sc.p.AutoAddAliases && sc.aliasTarget(users, addr) != "":
			a.State, a.Reason, a.Since, a.Clean = snapshot.DiscoveredAlias, ReasonLocalPart, now, nil
			a.Target = sc.aliasTarget(users, addr)
			sc.promote(addr)
		case len(a.Clean) >= max(sc.p.Threshold, 1):
			sc.becomeUser(a, ReasonThreshold, now)
		case now.Sub(a.FirstSeen) >= expiry && sc.p.ExpiredAddressesBecomeUsers:
			sc.becomeUser(a, ReasonExpired, now)
		case now.Sub(a.FirstSeen) >= expiry:
			a.State, a.Reason, a.Since, a.Clean = snapshot.DiscoveredInvalid, ReasonExpired, now, nil
		}
	}
}

// full reports whether addr's domain has as many discovered users and aliases as the
// limit allows.
func (sc *scope) full(byAddr map[string]*Address, addr string) bool {
	if sc.promoted == nil {
		sc.promoted = map[string]int{}
		for _, a := range byAddr {
			if a.State == snapshot.DiscoveredUser || a.State == snapshot.DiscoveredAlias {
				sc.promoted[domainpart(a.Address)]++
			}
		}
	}
	return sc.promoted[domainpart(addr)] >= sc.limit
}

// promote counts a new user or alias of addr's domain towards the limit.
func (sc *scope) promote(addr string) {
	if sc.promoted != nil {
		sc.promoted[domainpart(addr)]++
	}
}

// aliasTarget returns the first user of another domain with addr's local part.
func (sc *scope) aliasTarget(users map[string][]string, addr string) string {
	for _, u := range users[localpart(addr)] {
		if domainpart(u) != domainpart(addr) {
			return u
		}
	}
	return ""
}

// bound keeps at most the limit per domain and returns the addresses sorted.
func (sc *scope) bound(byAddr map[string]*Address) []Address {
	limit := sc.limit
	perDomain := map[string][]*Address{}
	for _, a := range byAddr {
		perDomain[domainpart(a.Address)] = append(perDomain[domainpart(a.Address)], a)
	}
	out := make([]Address, 0, len(byAddr))
	for _, as := range perDomain {
		if len(as) > limit {
			// Forget Invalid first, then Pending, each least recently seen first; users
			// and aliases are never forgotten.
			rank := map[string]int{snapshot.DiscoveredInvalid: 0, snapshot.DiscoveredPending: 1}
			slices.SortFunc(as, func(x, y *Address) int {
				rx, okx := rank[x.State]
				ry, oky := rank[y.State]
				if !okx {
					rx = 2
				}
				if !oky {
					ry = 2
				}
				return cmp.Or(cmp.Compare(rx, ry), x.LastSeen.Compare(y.LastSeen), strings.Compare(x.Address, y.Address))
			})
			drop := 0
			for drop < len(as)-limit && as[drop].State != snapshot.DiscoveredUser && as[drop].State != snapshot.DiscoveredAlias {
				drop++
			}
			as = as[drop:]
		}
		for _, a := range as {
			out = append(out, *a)
		}
	}
	slices.SortFunc(out, func(x, y Address) int { return strings.Compare(x.Address, y.Address) })
	return out
}
