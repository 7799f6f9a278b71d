package discovery

import (
	"container/list"
	"sync"
	"time"
)

// entry is a cached callout outcome.
type entry struct {
	key     string
	outcome Outcome
	// refresh is when the outcome is worth asking again (it is still served);
	// expires is when it is no longer served.
	refresh, expires time.Time
}

// cache is a bounded LRU of callout outcomes by address. It is safe for concurrent use.
type cache struct {
	mu    sync.Mutex
	max   int
	order *list.List // front: most recently used
	byKey map[string]*list.Element
}

func newCache(maxEntries int) *cache {
	return &cache{max: maxEntries, order: list.New(), byKey: make(map[string]*list.Element)}
}

// get returns the live entry for key at now, and whether it is due a refresh.
func (c *cache) get(key string, now time.Time) (e entry, stale, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el := c.byKey[key]
	if el == nil {
		return entry{}, false, false
	}
	e = el.Value.(entry)
	if !now.Before(e.expires) {
		c.order.Remove(el)
		delete(c.byKey, key)
		return entry{}, false, false
	}
	c.order.MoveToFront(el)
	return e, !now.Before(e.refresh), true
}

func (c *cache) put(e entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el := c.byKey[e.key]; el != nil {
		el.Value = e
		c.order.MoveToFront(el)
		return
	}
	c.byKey[e.key] = c.order.PushFront(e)
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byKey, last.Value.(entry).key)
	}
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
