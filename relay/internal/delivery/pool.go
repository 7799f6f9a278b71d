package delivery

import "time"

// Close ends idle sessions. Deliveries in progress are not interrupted.
func (cl *Client) Close() error {
	cl.mu.Lock()
	if cl.closed {
		cl.mu.Unlock()
		return nil
	}
	cl.closed = true
	idle := cl.idle
	cl.idle = map[poolKey][]*session{}
	cl.mu.Unlock()
	close(cl.stop)
	<-cl.done
	for _, ss := range idle {
		for _, s := range ss {
			_ = s.c.Quit()
			s.close()
		}
	}
	return nil
}

// get takes an idle session for key, if a fresh enough one waits.
func (cl *Client) get(key poolKey) (*session, bool) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	now := cl.now()
	for ss := cl.idle[key]; len(ss) > 0; ss = cl.idle[key] {
		s := ss[len(ss)-1]
		cl.idle[key] = ss[:len(ss)-1]
		if len(cl.idle[key]) == 0 {
			delete(cl.idle, key)
		}
		if now.Sub(s.idle) > cl.opts.IdleTimeout || now.Sub(s.created) > cl.opts.MaxSessionAge {
			go s.close()
			continue
		}
		s.uses++
		cl.metrics.Connections.WithLabelValues("reused").Inc()
		return s, true
	}
	return nil, false
}

func (cl *Client) put(s *session) {
	now := cl.now()
	cl.mu.Lock()
	if cl.closed || len(cl.idle[s.key]) >= cl.opts.MaxIdlePerHost ||
		now.Sub(s.created) > cl.opts.MaxSessionAge || s.uses >= defaultMaxSessionUses {
		cl.mu.Unlock()
		go func() { _ = s.c.Quit(); s.close() }()
		return
	}
	s.idle = now
	cl.idle[s.key] = append(cl.idle[s.key], s)
	cl.mu.Unlock()
}

// janitor closes sessions that idled too long, so the remote ends are not left hanging.
func (cl *Client) janitor() {
	defer close(cl.done)
	t := time.NewTicker(defaultJanitorInterval)
	defer t.Stop()
	for {
		select {
		case <-cl.stop:
			return
		case <-t.C:
		}
		now := cl.now()
		var stale []*session
		cl.mu.Lock()
		for k, ss := range cl.idle {
			keep := ss[:0]
			for _, s := range ss {
				if now.Sub(s.idle) > cl.opts.IdleTimeout {
					stale = append(stale, s)
				} else {
					keep = append(keep, s)
				}
			}
			if len(keep) == 0 {
				delete(cl.idle, k)
			} else {
				cl.idle[k] = keep
			}
		}
		cl.mu.Unlock()
		for _, s := range stale {
			_ = s.c.Quit()
			s.close()
		}
	}
}
